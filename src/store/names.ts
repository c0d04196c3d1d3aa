/**
 * The names strata gives its own entries under Home (staging and trash dirs, ready layers, records,
 * images, links). Every one is built here, so each is one path component that fits NAME_MAX for
 * every valid layer ID: temp names shorten a long ID (they only need to be unique, which the pid
 * and a counter make them), names that must give the ID back refuse an ID that cannot fit.
 */
import * as path from "node:path";
import { InvalidRequestError, StrataError } from "../core/errors.ts";
import { assertLayerId } from "../core/layer-id.ts";

/** Linux's limit on one path component, in bytes. */
export const NAME_MAX = 255;

const encoder = new TextEncoder();

/** Whether `name` is a single path component of at most NAME_MAX bytes. */
export function isSafeName(name: string): boolean {
  return name !== "" && name !== "." && name !== ".." && !name.includes("/") && !name.includes("\0") &&
    encoder.encode(name).byteLength <= NAME_MAX;
}

/**
 * `dir/name`, after checking `name` is one component that fits: the one way an internal name
 * becomes a path.
 * @example
 * entryPath("/h/tmp", "new-abc-12-1"); // "/h/tmp/new-abc-12-1"
 */
export function entryPath(dir: string, name: string): string {
  if (!isSafeName(name)) throw new StrataError(`Cannot make an entry of "${dir}" named ${JSON.stringify(name.slice(0, 80))}: it is not one path component of at most ${NAME_MAX} bytes`);
  return path.join(dir, name);
}

/** Bytes a temp name leaves free for a suffix added to it later (`<staging>.img`). */
export const TEMP_SUFFIX_ROOM = 8;

/**
 * A unique temp name `<prefix><id>-<pid>-<seq>`, the ID cut short when the whole (plus
 * TEMP_SUFFIX_ROOM) would not fit NAME_MAX; layer IDs are ASCII, so characters are bytes.
 * @example
 * tempName("rm-", "abc", 7); // "rm-abc-<pid>-7"
 */
export function tempName(prefix: string, id: string, seq: number): string {
  assertLayerId(id);
  const tail = `-${process.pid}-${seq}`;
  const room = NAME_MAX - TEMP_SUFFIX_ROOM - prefix.length - tail.length;
  return `${prefix}${id.slice(0, Math.max(room, 1))}${tail}`;
}

/**
 * `<id><suffix>`, for names the ID is read back from (`.quota/<id>.img`); refuses with
 * InvalidRequestError an ID too long to carry the suffix, before anything is created.
 * @example
 * idName("abc", ".img", 'create layer "abc" with a size limit'); // "abc.img"
 */
export function idName(id: string, suffix: string, action: string): string {
  assertLayerId(id);
  const max = NAME_MAX - suffix.length;
  if (id.length > max) throw new InvalidRequestError(`Cannot ${action}: its ID is longer than ${max} characters`);
  return `${id}${suffix}`;
}

/** The longest layer ID `idName(id, suffix)` accepts. */
export function maxIdFor(suffix: string): number {
  return NAME_MAX - suffix.length;
}
