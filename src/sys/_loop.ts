/**
 * Loop devices through `/dev/loop-control` and `LOOP_CONFIGURE` (Linux 5.8): one ioctl attaches a
 * backing file with its flags set, so no window exists in which the device is bound without
 * `LO_FLAGS_AUTOCLEAR`. With autoclear the kernel detaches the device when its last opener (the
 * caller's fd, then the mount) goes away, so a crash can never leak an attached device.
 */
import { ErrnoError } from "../core/errors.ts";
import type { LoopDevice } from "./types.ts";

/** `LOOP_CTL_GET_FREE`: the number of a free loop device, created if needed. */
export const LOOP_CTL_GET_FREE = 0x4c82;
/** `LOOP_CONFIGURE`: bind a file and set its status in one call. */
export const LOOP_CONFIGURE = 0x4c0a;
/** `LO_FLAGS_AUTOCLEAR`: detach when the last reference is dropped. */
export const LO_FLAGS_AUTOCLEAR = 4;
/** `sizeof(struct loop_config)`: fd, block_size, a `struct loop_info64` (232 bytes), 8 reserved u64. */
export const LOOP_CONFIG_SIZE = 304;
/** The loop block device major. */
const LOOP_MAJOR = 7;
/** `O_RDWR | O_CLOEXEC`. */
const O_RDWR_CLOEXEC = 0o2000002;
const S_IFBLK = 0o060000;
const ENOENT = 2;
const EBUSY = 16;
/** Another process may take the device LOOP_CTL_GET_FREE named before we configure it. */
const ATTEMPTS = 16;

/** What the loop code needs from libc. */
export interface LoopLibc {
  open(path: Uint8Array, flags: number, mode: number): number | bigint;
  close(fd: number): number | bigint;
  ioctl(fd: number, request: number | bigint, arg: number | bigint): number | bigint;
  mknodat(dirfd: number, path: Uint8Array, mode: number, dev: bigint): number | bigint;
}

/**
 * A `struct loop_config` for `backingFd`: autoclear, and the file name for `losetup -l` (cut to 63 bytes).
 * @example
 * encodeLoopConfig(5, "/h/.quota/abc.img").byteLength; // 304
 */
export function encodeLoopConfig(backingFd: number, fileName: string): Uint8Array {
  const buf = new Uint8Array(LOOP_CONFIG_SIZE);
  const view = new DataView(buf.buffer);
  view.setUint32(0, backingFd, true);
  // loop_info64 starts at 8: five u64 (device, inode, rdevice, offset, sizelimit), then
  // lo_number, lo_encrypt_type, lo_encrypt_key_size, lo_flags (u32 each), then lo_file_name[64].
  view.setUint32(8 + 52, LO_FLAGS_AUTOCLEAR, true);
  buf.set(new TextEncoder().encode(fileName).subarray(0, 63), 8 + 56);
  return buf;
}

/**
 * Attach `file` to a free loop device. The returned fd keeps the device: mount it, then close the fd.
 * `addressOf` gives a buffer's address as the runtime's FFI passes pointers in an integer argument.
 */
export function attachLoop(
  libc: LoopLibc,
  errno: () => number,
  cstr: (s: string, syscall: string) => Uint8Array,
  addressOf: (buf: Uint8Array) => number | bigint,
  file: string,
): LoopDevice {
  const fail = (syscall: string, path?: string): never => {
    throw new ErrnoError(syscall, errno(), path);
  };
  const ok = (ret: number | bigint, syscall: string, path?: string): number => {
    if (ret === -1 || ret === -1n) fail(syscall, path);
    return Number(ret);
  };
  const ctl = ok(libc.open(cstr("/dev/loop-control", "open"), O_RDWR_CLOEXEC, 0), "open", "/dev/loop-control");
  let backing = -1;
  try {
    backing = ok(libc.open(cstr(file, "open"), O_RDWR_CLOEXEC, 0), "open", file);
    const config = encodeLoopConfig(backing, file);
    for (let attempt = 1; ; attempt++) {
      const n = ok(libc.ioctl(ctl, LOOP_CTL_GET_FREE, 0), "ioctl(LOOP_CTL_GET_FREE)");
      const device = `/dev/loop${n}`;
      let fd = Number(libc.open(cstr(device, "open"), O_RDWR_CLOEXEC, 0));
      if (fd === -1 && errno() === ENOENT) {
        // A /dev without devtmpfs (a plugin's rootfs) lacks the node the kernel just created.
        ok(libc.mknodat(-100, cstr(device, "mknod"), S_IFBLK | 0o660, BigInt(n & 0xff) | (BigInt(LOOP_MAJOR) << 8n) | (BigInt(n & ~0xff) << 12n)), "mknod", device);
        fd = Number(libc.open(cstr(device, "open"), O_RDWR_CLOEXEC, 0));
      }
      if (fd === -1) fail("open", device);
      // The buffer stays referenced across the call, so the address stays valid.
      if (Number(libc.ioctl(fd, LOOP_CONFIGURE, addressOf(config))) !== -1) return { device, fd };
      const err = errno();
      libc.close(fd);
      if (err !== EBUSY || attempt >= ATTEMPTS) throw new ErrnoError("ioctl(LOOP_CONFIGURE)", err, device);
    }
  } finally {
    if (backing >= 0) libc.close(backing);
    libc.close(ctl);
  }
}
