/**
 * Inline xattrs of an inode: a 12-byte `erofs_xattr_ibody_header` (no shared xattrs, no name
 * filter) and one `erofs_xattr_entry` per attribute, each name stored as a prefix index plus the
 * rest of the name, each entry padded to 4 bytes.
 */

/** Short name prefixes and their `e_name_index`; the ACL names are whole names with an empty rest. */
const _PREFIXES: ReadonlyArray<readonly [string, number]> = [
  ["system.posix_acl_access", 2],
  ["system.posix_acl_default", 3],
  ["user.", 1],
  ["trusted.", 4],
  ["security.", 6],
];
/** `sizeof(struct erofs_xattr_ibody_header)`. */
const IBODY_HEADER = 12;
/** `sizeof(struct erofs_xattr_entry)`. */
const ENTRY_HEADER = 4;
/** `e_value_size` is 16 bits. */
export const XATTR_VALUE_MAX = 0xffff;
/** `i_xattr_icount` is 16 bits: (ibody size - 12) / 4 + 1 must fit. */
const ICOUNT_MAX = 0xffff;

const _utf8 = new TextEncoder();

/** The prefix index and the encoded rest of `name`, or a reason it cannot be stored. */
export function splitXattrName(name: string): { index: number; suffix: Uint8Array } | string {
  for (const [prefix, index] of _PREFIXES) {
    if (!name.startsWith(prefix)) continue;
    const rest = name.slice(prefix.length);
    // The ACL names are complete: "system.posix_acl_accessX" is another, unknown attribute.
    if (index === 2 || index === 3) {
      if (rest !== "") break;
    } else if (rest === "") return `xattr "${name}" has an empty name`;
    const suffix = _utf8.encode(rest);
    if (suffix.byteLength > 255) return `xattr "${name.slice(0, 64)}…" has a name longer than 255 bytes`;
    return { index, suffix };
  }
  return `xattr "${name}" is in a namespace EROFS cannot store`;
}

/**
 * The inline xattr body of an inode and its `i_xattr_icount`, or a reason the attributes do not
 * fit an inode. Empty (count 0) when there are none.
 * @example
 * encodeXattrs(new Map([["trusted.overlay.opaque", Uint8Array.of(0x79)]])); // { body: 32 bytes, count: 6 }
 */
export function encodeXattrs(xattrs: ReadonlyMap<string, Uint8Array>): { body: Uint8Array; count: number } | string {
  if (xattrs.size === 0) return { body: new Uint8Array(0), count: 0 };
  const parts: Array<{ index: number; suffix: Uint8Array; value: Uint8Array }> = [];
  let size = IBODY_HEADER;
  for (const [name, value] of xattrs) {
    const split = splitXattrName(name);
    if (typeof split === "string") return split;
    if (value.byteLength > XATTR_VALUE_MAX) return `xattr "${name}" has a value of ${value.byteLength} bytes, more than ${XATTR_VALUE_MAX}`;
    parts.push({ ...split, value });
    size += _align4(ENTRY_HEADER + split.suffix.byteLength + value.byteLength);
  }
  const count = (size - IBODY_HEADER) / 4 + 1;
  if (count > ICOUNT_MAX) return `xattrs of ${size} bytes exceed what one inode holds`;
  const body = new Uint8Array(size);
  const view = new DataView(body.buffer);
  let at = IBODY_HEADER;
  for (const p of parts) {
    view.setUint8(at, p.suffix.byteLength);
    view.setUint8(at + 1, p.index);
    view.setUint16(at + 2, p.value.byteLength, true);
    body.set(p.suffix, at + ENTRY_HEADER);
    body.set(p.value, at + ENTRY_HEADER + p.suffix.byteLength);
    at += _align4(ENTRY_HEADER + p.suffix.byteLength + p.value.byteLength);
  }
  return { body, count };
}

function _align4(n: number): number {
  return (n + 3) & ~3;
}
