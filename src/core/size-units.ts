/** Sizes written as people write them ("2G", "512MiB"), shared by every front end and driver. */
import { InvalidRequestError } from "./errors.ts";

/** The smallest size limit of a layer: ext4's own metadata and journal need a few MiB. */
export const MIN_SIZE = 16 * 1024 * 1024;

const UNITS: Record<string, number> = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

/**
 * Parse a size as docker's `--storage-opt size=` does (units.RAMInBytes: binary multiples, an
 * optional "i" and "b", any case). Returns bytes; throws InvalidRequestError on anything else.
 * @example
 * parseSize("2G");     // 2147483648
 * parseSize("512MiB"); // 536870912
 * parseSize("1.5g");   // 1610612736
 */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$/i.exec(text);
  if (!m || (m[3] !== undefined && m[2] === "" && m[3].length > 1)) {
    throw new InvalidRequestError(`Invalid size "${text}": expected a number of bytes with an optional unit (k, m, g, t), e.g. 10G`);
  }
  const bytes = Math.floor(Number(m[1]) * UNITS[m[2].toLowerCase()]);
  if (!Number.isSafeInteger(bytes)) throw new InvalidRequestError(`Invalid size "${text}": too large`);
  return bytes;
}
