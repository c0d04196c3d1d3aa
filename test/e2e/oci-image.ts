/**
 * End-to-end helpers: offline OCI image archives (oci-layout, index.json, blobs/sha256/…) for
 * `ctr images import`, built in memory with strata's own tar writer so every run gives the same bytes.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { TarHeader } from "../../src/archive/tar-types.ts";
import { entry, file, makeTar } from "../helpers/layer-tar.ts";
import { makeBusyboxImageTar } from "./busybox-image.ts";

/** The media types of an uncompressed single-platform OCI image. */
export const OCI_MEDIA = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar",
} as const;

// A fixed time for configs and tar headers: the same inputs always give the same digests.
const CREATED = "2024-01-01T00:00:00Z";
const MTIME = { sec: 1_704_067_200, nsec: 0 };

/** What {@link writeOciArchive} wrote. */
export interface OciImage {
  /** The archive for `ctr images import`. */
  archive: string;
  /** The image name containerd registers (`io.containerd.image.name`). */
  name: string;
  manifestDigest: string;
  configDigest: string;
  /** One per layer, base first; equal to the layer digests since the layers are uncompressed. */
  diffIds: string[];
  /** The committed snapshots' names containerd unpacks into, base first (see {@link chainIds}). */
  chainIds: string[];
  /** Bytes of all layers together. */
  layerBytes: number;
}

/** `process.arch` as OCI spells it: ctr imports only the host's platform. */
export function ociArch(arch: string = process.arch): string {
  return ({ x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386", ppc64: "ppc64le", s390x: "s390x" } as Record<string, string>)[arch] ?? arch;
}

/** `sha256:<hex>` of `bytes`. */
export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/**
 * The chain ids of a layer stack (OCI image spec, config.md): the base's diff id, then
 * `sha256(parent chain id + " " + diff id)` for each layer above. containerd names committed snapshots so.
 */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) out.push(out.length === 0 ? d : sha256Digest(new TextEncoder().encode(`${out.at(-1)} ${d}`)));
  return out;
}

/**
 * Write an OCI image layout as one tar: a config listing `rootfs.diff_ids`, a manifest, an index naming
 * the image `name` (full reference, e.g. `docker.io/library/x:latest`), and the layers as uncompressed tars.
 *
 * @example
 * ```ts
 * const img = await writeOciArchive(path.join(root, "img.tar"), "docker.io/library/e2e:1", [layerTar]);
 * await ctr("images", "import", "--snapshotter", "overlayfs", img.archive);
 * ```
 */
export async function writeOciArchive(archive: string, name: string, layers: Uint8Array[], cmd = ["/bin/sh"]): Promise<OciImage> {
  const blobs = new Map<string, Uint8Array>();
  const blob = (bytes: Uint8Array) => {
    const digest = sha256Digest(bytes);
    blobs.set(digest, bytes);
    return { digest, size: bytes.byteLength };
  };
  const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
  const layerDescs = layers.map((l) => ({ mediaType: OCI_MEDIA.layer, ...blob(l) }));
  const diffIds = layerDescs.map((d) => d.digest);
  const platform = { architecture: ociArch(), os: "linux" };
  const config = blob(json({
    created: CREATED,
    ...platform,
    config: { Cmd: cmd, Env: ["PATH=/bin"], WorkingDir: "/" },
    rootfs: { type: "layers", diff_ids: diffIds },
    history: diffIds.map((_, i) => ({ created: CREATED, created_by: `strata e2e layer ${i}` })),
  }));
  const manifest = blob(json({
    schemaVersion: 2,
    mediaType: OCI_MEDIA.manifest,
    config: { mediaType: OCI_MEDIA.config, ...config },
    layers: layerDescs,
  }));
  const tag = name.slice(name.lastIndexOf(":") + 1);
  const index = json({
    schemaVersion: 2,
    mediaType: OCI_MEDIA.index,
    manifests: [{
      mediaType: OCI_MEDIA.manifest,
      ...manifest,
      platform,
      annotations: { "io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag },
    }],
  });
  const items: Array<TarHeader | [TarHeader, Uint8Array]> = [
    file("oci-layout", JSON.stringify({ imageLayoutVersion: "1.0.0" }), { mtime: MTIME }),
    file("index.json", new TextDecoder().decode(index), { mtime: MTIME }),
    entry({ name: "blobs", type: "directory", mtime: MTIME }),
    entry({ name: "blobs/sha256", type: "directory", mtime: MTIME }),
    ...[...blobs.keys()].sort().map((d): [TarHeader, Uint8Array] => {
      const bytes = blobs.get(d)!;
      return [entry({ name: `blobs/sha256/${d.slice(7)}`, size: bytes.byteLength, mtime: MTIME }), bytes];
    }),
  ];
  fs.writeFileSync(archive, await makeTar(items));
  return {
    archive,
    name,
    manifestDigest: manifest.digest,
    configDigest: config.digest,
    diffIds,
    chainIds: chainIds(diffIds),
    layerBytes: layers.reduce((s, l) => s + l.byteLength, 0),
  };
}

/**
 * The busybox image as an OCI archive `<dir>/busybox-oci.tar`: one layer, the rootfs of
 * {@link makeBusyboxImageTar} (deterministic, so the chain id is the same on every run).
 */
export async function makeBusyboxOciImage(dir: string, name: string): Promise<OciImage> {
  const base = await _busyboxLayer(dir);
  return await writeOciArchive(path.join(dir, "busybox-oci.tar"), name, [base]);
}

/** What the layers above the base of {@link makeManyLayerOciImage} leave in the image. */
export interface ManyLayerContents {
  /** `/layers/<NNN>.txt` files present in the final rootfs, each holding `layer NNN\n`. */
  present: string[];
  /** Files added by one layer and whited out by a later one. */
  whitedOut: string[];
  /** A base file whited out by an upper layer. */
  baseWhitedOut: string;
  /** `/top.txt` is written by the top layer only: its content. */
  top: string;
}

/**
 * An image of `count` layers: the busybox base, then `count - 1` small layers built in memory. Layer i
 * adds `/layers/<iii>.txt`; every tenth layer also whites out the previous layer's file; the middle layer
 * whites out the base's `/bin/touch`; the top layer writes `/top.txt`.
 */
export async function makeManyLayerOciImage(dir: string, name: string, count: number): Promise<OciImage & { contents: ManyLayerContents }> {
  const base = await _busyboxLayer(dir);
  const width = String(count).length;
  const fileName = (i: number) => `${String(i).padStart(width, "0")}.txt`;
  const present = new Set<string>();
  const whitedOut: string[] = [];
  const middle = Math.floor(count / 2);
  const top = `top of ${count} layers\n`;
  const layers: Uint8Array[] = [base];
  for (let i = 1; i < count; i++) {
    const items: Array<TarHeader | [TarHeader, Uint8Array]> = [entry({ name: "layers", type: "directory", mtime: MTIME })];
    if (i % 10 === 0 && i > 1) {
      // A whiteout is an empty file named .wh.<name> next to the deleted one (OCI image spec, layer.md).
      items.push(entry({ name: `layers/.wh.${fileName(i - 1)}`, mtime: MTIME }));
      present.delete(fileName(i - 1));
      whitedOut.push(`/layers/${fileName(i - 1)}`);
    }
    items.push(file(`layers/${fileName(i)}`, `layer ${i}\n`, { mtime: MTIME }));
    present.add(fileName(i));
    if (i === middle) items.push(entry({ name: "bin", type: "directory", mtime: MTIME }), entry({ name: "bin/.wh.touch", mtime: MTIME }));
    if (i === count - 1) items.push(file("top.txt", top, { mtime: MTIME }));
    layers.push(await makeTar(items));
  }
  const img = await writeOciArchive(path.join(dir, `layers-${count}-oci.tar`), name, layers);
  return { ...img, contents: { present: [...present].sort().map((f) => `/layers/${f}`), whitedOut, baseWhitedOut: "/bin/touch", top } };
}

// One busybox rootfs per directory: makeBusyboxImageTar cannot build over an existing one.
async function _busyboxLayer(dir: string): Promise<Uint8Array> {
  const tar = path.join(dir, "busybox.tar");
  return new Uint8Array(fs.readFileSync(fs.existsSync(tar) ? tar : await makeBusyboxImageTar(dir)));
}
