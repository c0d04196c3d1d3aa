/**
 * Short names for the directories an overlay mount stacks: fsconfig(2) takes values of at most
 * 255 bytes, and a long Home or a 255-character layer ID makes `lowerdir+=<abs path>` longer. Each
 * directory gets `.l/<26 base32 chars of its hash>` → `../<id>/<leaf>`, made when first needed and
 * checked to point where it must every time (a planted link is replaced, never followed).
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { hasCode } from "../../src/core/errors.ts";
import { LINK_DIR } from "./layout.ts";

/** fsconfig(2) copies at most 256 bytes of a string value, NUL included. */
export const FSCONFIG_VALUE_MAX = 255;
const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** The link name of `<id>/<leaf>`. */
export function shortName(id: string, leaf: string): string {
  const digest = createHash("sha256").update(`${id}/${leaf}`).digest();
  let out = "";
  for (let i = 0; i < 26; i++) out += BASE32[digest[i] & 31];
  return out;
}

/** Whether every option's value fits fsconfig(2). */
export function fitsFsconfig(options: readonly string[]): boolean {
  const enc = new TextEncoder();
  return options.every((o) => enc.encode(o).byteLength - o.indexOf("=") - 1 <= FSCONFIG_VALUE_MAX);
}

/** Make (or repair) the link for `<id>/<leaf>` under `home`; returns its path relative to a layer dir. */
export async function ensureShortLink(home: string, id: string, leaf: string): Promise<string> {
  const name = shortName(id, leaf);
  const link = path.join(home, LINK_DIR, name);
  const target = path.join("..", id, leaf);
  const now = await fs.readlink(link).catch((err) => {
    if (hasCode(err, "ENOENT")) return null;
    if (hasCode(err, "EINVAL")) return "";
    throw err;
  });
  if (now !== target) {
    // Not ours (or stale): a link goes with unlink; anything else (a directory) is refused by rm's checks.
    if (now !== null) await fs.unlink(link);
    await fs.symlink(target, link);
  }
  return path.join("..", LINK_DIR, name);
}

/** Remove the layer's links, as links. */
export async function removeShortLinks(home: string, id: string, leaves: readonly string[]): Promise<void> {
  for (const leaf of leaves) {
    const link = path.join(home, LINK_DIR, shortName(id, leaf));
    const st = await fs.lstat(link).catch(() => null);
    if (st?.isSymbolicLink()) await fs.unlink(link);
  }
}
