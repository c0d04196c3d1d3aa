/**
 * Mounts as plain data (`{type, source, options}`, containerd-style): drivers build them with pure
 * functions, `mounter.ts` performs them, and the snapshotter hands them to containerd as they are.
 */

/** A mount, as data. */
export interface MountSpec {
  /** Filesystem type ("overlay", "bind", "ext4"). */
  type: string;
  /** What is mounted: "overlay", a directory for a bind, a device. */
  source: string;
  /** `key=value` or flag options, in order. `lowerdir+=` entries need the new mount API. */
  options: string[];
  /** The directory relative paths in `options` resolve against; set only by overlay's short forms (paths too long otherwise). */
  cwd?: string;
}

/** The data string mount(2) receives for a spec. */
export function mountData(spec: MountSpec): string {
  return spec.options.join(",");
}

/**
 * Split an option into what `fsconfig` takes: a key and a string value, or a bare flag (value null).
 * @example
 * splitOption("lowerdir+=/a=b"); // ["lowerdir+", "/a=b"]
 * splitOption("userxattr");      // ["userxattr", null]
 */
export function splitOption(option: string): [string, string | null] {
  const eq = option.indexOf("=");
  return eq < 0 ? [option, null] : [option.slice(0, eq), option.slice(eq + 1)];
}

/** Whether a spec can only be mounted with the new mount API. */
export function needsFsconfig(spec: MountSpec): boolean {
  return spec.options.some((o) => splitOption(o)[0].endsWith("+"));
}
