/**
 * The Driver interface every storage driver implements, and the registry that picks one.
 * Mirrors moby's `daemon/graphdriver`: a ProtoDriver (directories and mounts) plus the diff
 * operations; a driver with only the first half gets the second from `withNaiveDiff`.
 */
import type { Sys } from "../sys/types.ts";
import type { Logger } from "./log.ts";
import type { MountSpec } from "../mount/spec.ts";
import { type HomeState, type StoreLayout, claimHome, foreignHome, inspectHome, isFresh, looksLike, markHome, restoreFresh } from "../store/home.ts";
import { ErrIncompatibleFS, ErrNotSupported, ErrPrerequisites, InvalidRequestError, StrataError } from "./errors.ts";

/** One entry of a UID/GID map, as dockerd sends it. */
export interface IdMap {
  container_id: number;
  host_id: number;
  size: number;
}

/**
 * The host uid/gid that container root maps to (0/0 without maps): the owner of every layer root,
 * so the remapped root of `--userns-remap` owns its container's `/`.
 * @example
 * rootPair([{ container_id: 0, host_id: 100000, size: 65536 }], []); // { uid: 100000, gid: 0 }
 */
export function rootPair(uidMaps: readonly IdMap[], gidMaps: readonly IdMap[]): { uid: number; gid: number } {
  const root = (maps: readonly IdMap[]) => {
    const m = maps.find((e) => e.container_id <= 0 && 0 < e.container_id + e.size);
    return m === undefined ? 0 : m.host_id - m.container_id;
  };
  return { uid: root(uidMaps), gid: root(gidMaps) };
}

import type { Change } from "../archive/change.ts";

export { type Change, ChangeKind } from "../archive/change.ts";

/** Options of Create / CreateReadWrite. */
export interface CreateOpts {
  mountLabel?: string;
  storageOpt?: Record<string, string>;
}

/** Disk use of one layer's own content (not its parents'), as containerd's Usage reports it. */
export interface Usage {
  /** Bytes allocated (st_blocks × 512), each inode counted once. */
  size: number;
  /** Inodes, directories included. */
  inodes: number;
}

/** Key/value pairs shown by `docker info`. */
export type StatusPairs = Array<[string, string]>;

/** Directories and mounts: what every driver must implement itself. */
export interface ProtoDriver {
  /** The driver's registered name, e.g. "vfs". */
  readonly name: string;
  /** Key/value pairs for `docker info`. */
  status(): Promise<StatusPairs>;
  /** Low-level details for `docker inspect` (GraphDriver.Data). */
  getMetadata(id: string): Promise<Record<string, string>>;
  /** Release everything held (mounts); called on daemon shutdown. */
  cleanup(): Promise<void>;
  /** A new read-only (image) layer on top of parent ("" for none). Fails if id exists. */
  create(id: string, parent: string, opts: CreateOpts): Promise<void>;
  /** A new writable (container) layer on top of parent. */
  createReadWrite(id: string, parent: string, opts: CreateOpts): Promise<void>;
  /**
   * Delete the layer. Removing an unknown layer succeeds (moby's drivers do the same); a layer
   * others are built on is refused with BusyError (dockerd always removes children first).
   */
  remove(id: string): Promise<void>;
  /** Mount (reference counted) and return the absolute path of the layer's root. */
  get(id: string, mountLabel: string): Promise<string>;
  /** Drop one reference taken by `get`; unmounts at zero. */
  put(id: string): Promise<void>;
  /** Whether the layer exists. */
  exists(id: string): Promise<boolean>;
  /** What the daemon may rely on. */
  capabilities(): { ReproducesExactDiffs: boolean };
  /**
   * The mounts that make up the layer's root, as data, for another process to perform (the
   * snapshotter front end); `readonly` for views. Takes no reference and mounts nothing the caller
   * must release, apart from lower stacks a driver keeps mounted for chains deeper than `fits`
   * allows in one mount (by default: options shorter than a page, as mount(2) takes them).
   */
  mounts(id: string, readonly: boolean, fits?: MountFits): Promise<MountSpec[]>;
  /** Seal the layer: it is written no more, and children may be built on it (containerd's Commit). */
  commit(id: string): Promise<void>;
  /** The layer's own disk use. */
  usage(id: string): Promise<Usage>;
  /** Every layer in the store (containerd's Cleanup removes the ones no record names). */
  layerIds(): Promise<string[]>;
}

/** Whether the process performing `spec` can mount it with one mount(2) of at most `pageSize - 1` bytes of data. */
export type MountFits = (spec: MountSpec, pageSize: number) => boolean;

/** The default {@link MountFits}: mount(2) with the options as they are. */
export const fitsOnePage: MountFits = (spec, pageSize) => spec.options.join(",").length < pageSize;

/** ProtoDriver's method names: what wrappers such as `withNaiveDiff` pass through. */
export const PROTO_METHODS = [
  "status", "getMetadata", "cleanup", "create", "createReadWrite", "remove", "get", "put", "exists",
  "capabilities", "mounts", "commit", "usage", "layerIds",
] as const satisfies readonly (keyof ProtoDriver)[];

/** The diff half of the interface. */
export interface DiffDriver {
  /** The changes of `id` against `parent` ("" = the layer's own parent) as an uncompressed tar with AUFS whiteouts. */
  diff(id: string, parent: string): Promise<ReadableStream<Uint8Array>>;
  /** The list of changes of `id` against `parent`. */
  changes(id: string, parent: string): Promise<Change[]>;
  /** Extract a layer tar into `id` (created on `parent`); returns the applied content size. */
  applyDiff(id: string, parent: string, tar: ReadableStream<Uint8Array>): Promise<number>;
  /** The size of the changes of `id` against `parent`. */
  diffSize(id: string, parent: string): Promise<number>;
}

/** A complete driver, as the protocol app serves it. */
export interface Driver extends ProtoDriver, DiffDriver {}

/** What a driver's init receives. */
export interface DriverConfig {
  /** The directory the daemon gave Init (`<data-root>/<name>`); everything lives under it. */
  home: string;
  /** Driver options from `strata.KEY=VALUE` Init options, without the prefix (minus `driver`). */
  options: Record<string, string>;
  uidMaps: IdMap[];
  gidMaps: IdMap[];
  sys: Sys;
  log: Logger;
}

/** Fail Init naming the first option `driver` does not know. */
export function rejectUnknownOptions(driver: string, options: Record<string, string>, known: readonly string[]): void {
  const unknown = Object.keys(options).find((k) => !known.includes(k));
  if (unknown !== undefined) {
    const knownText = known.length ? `known: ${known.map((k) => `strata.${k}`).join(", ")}` : "it takes none";
    throw new InvalidRequestError(`Unknown option "strata.${unknown}" for driver ${driver} (${knownText})`);
  }
}

/** Builds a driver, or throws ErrNotSupported / ErrPrerequisites / ErrIncompatibleFS. */
export type InitFunc = (config: DriverConfig) => Promise<Driver>;

/** A registered driver. */
export interface Registration {
  init: InitFunc;
  priority: number;
  layout?: StoreLayout;
}

const registry = new Map<string, Registration>();

/**
 * Make a driver available by name; `auto` tries higher priorities first. `layout` is how a store
 * the driver made before Home got a marker looks, so such a Home is taken as its store.
 */
export function register(name: string, init: InitFunc, priority: number, layout?: StoreLayout): void {
  registry.set(name, { init, priority, layout });
}

/** Forget a driver (tests register throwaway drivers). */
export function unregister(name: string): void {
  registry.delete(name);
}

/**
 * What `name` was registered with (its init, priority and store layout), or undefined: `strata
 * check` recognises a store made before markers by its layout.
 */
export function registrationOf(name: string): Readonly<Registration> | undefined {
  return registry.get(name);
}

/** The registered names, highest priority first. */
export function registeredDrivers(): string[] {
  return [...registry.entries()].sort((a, b) => b[1].priority - a[1].priority).map(([n]) => n);
}

/** True for the errors that mean "this driver does not fit this host": `auto` skips those. */
export function isDriverUnavailable(err: unknown): boolean {
  return err instanceof ErrNotSupported || err instanceof ErrPrerequisites || err instanceof ErrIncompatibleFS;
}

/**
 * Initialise the driver `name`, or with "auto" the highest-priority one that inits on this host.
 * Home is checked first (`src/store/home.ts`): a Home that cannot be this driver's store is
 * refused with InvalidRequestError before anything is written.
 * @example
 * const driver = await initDriver("auto", { home, options: {}, uidMaps: [], gidMaps: [], sys });
 */
export async function initDriver(name: string, config: DriverConfig): Promise<Driver> {
  const state = await inspectHome(config.home);
  if (name !== "auto") {
    const reg = registry.get(name);
    if (!reg) throw new ErrNotSupported(`Unknown driver "${name}" (known: ${registeredDrivers().join(", ")})`);
    return await _initOn(state, name, reg, config);
  }
  // A store already there decides the driver: `auto` must not start another one over it.
  if (!isFresh(state)) {
    const owner = state.marker ?? registeredDrivers().find((n) => {
      const layout = registry.get(n)!.layout;
      return layout !== undefined && looksLike(state, layout);
    });
    const reg = owner === undefined ? undefined : registry.get(owner);
    if (owner === undefined || !reg) throw foreignHome(state, owner);
    return await _initOn(state, owner, reg, config);
  }
  return await firstAvailable(registeredDrivers(), (candidate) => _initOn(state, candidate, registry.get(candidate)!, config));
}

/**
 * What `init` gives for the first of `names` whose driver fits this host (it throws none of the
 * {@link isDriverUnavailable} errors); any other error stops the search.
 */
export async function firstAvailable<T>(names: readonly string[], init: (name: string) => Promise<T>): Promise<T> {
  const reasons: string[] = [];
  for (const name of names) {
    try {
      return await init(name);
    } catch (err) {
      if (!isDriverUnavailable(err)) throw err;
      reasons.push(`${name}: ${(err as Error).message}`);
    }
  }
  throw new StrataError(`No storage driver can run on this host (${reasons.join("; ")})`);
}

/** Init one driver on a checked Home: mark the store once it is up, undo a fresh Home's directories when it is not. */
async function _initOn(state: HomeState, name: string, reg: Registration, config: DriverConfig): Promise<Driver> {
  await claimHome(state, name, reg.layout);
  let driver: Driver;
  try {
    driver = await reg.init(config);
  } catch (err) {
    await restoreFresh(state).catch(() => {});
    throw err;
  }
  await markHome(state, name, config.sys);
  return driver;
}
