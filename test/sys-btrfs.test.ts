/**
 * The btrfs ioctls: struct layouts checked byte by byte against <linux/btrfs.h>, then every call
 * on a loop-mounted btrfs image (quotas on), cross-checked with btrfs-progs where it can tell.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { ErrnoError } from "../src/core/errors.ts";
import {
  BTRFS_IOC, decodeFsInfo, decodeQgroup, decodeQuotaStatus, encodeQgroupLimit, encodeQuotaStatusSearch, encodeSnapshotArgs,
  encodeVolArgs, formatUuid, withReadonly,
} from "../src/sys/_btrfs.ts";
import { createSys } from "../src/sys/bun.ts";
import { fsName } from "../src/sys/fs-magic.ts";
import { type BtrfsMount, btrfsProgs, btrfsUnavailable, mountBtrfs } from "./helpers/btrfs-root.ts";

const sys = createSys();

describe("btrfs struct layouts", () => {
  test("ioctl numbers match <linux/btrfs.h>", () => {
    expect(BTRFS_IOC.SUBVOL_CREATE).toBe(0x5000940e);
    expect(BTRFS_IOC.SNAP_DESTROY).toBe(0x5000940f);
    expect(BTRFS_IOC.SNAP_CREATE_V2).toBe(0x50009417);
    expect(BTRFS_IOC.SNAP_DESTROY_V2).toBe(0x5000943f);
    expect(BTRFS_IOC.TREE_SEARCH).toBe(0xd0009411);
    expect(BTRFS_IOC.INO_LOOKUP).toBe(0xd0009412);
    expect(BTRFS_IOC.SUBVOL_GETFLAGS).toBe(0x80089419);
    expect(BTRFS_IOC.SUBVOL_SETFLAGS).toBe(0x4008941a);
    expect(BTRFS_IOC.FS_INFO).toBe(0x8400941f);
    expect(BTRFS_IOC.QGROUP_CREATE).toBe(0x4010942a);
    expect(BTRFS_IOC.QGROUP_LIMIT).toBe(0x8030942b);
  });

  test("vol_args carries the name after the fd and refuses what is not one component", () => {
    const args = encodeVolArgs("layer")!;
    expect(args.byteLength).toBe(4096);
    expect(new TextDecoder().decode(args.subarray(8, 13))).toBe("layer");
    expect(args[13]).toBe(0);
    for (const bad of ["", ".", "..", "a/b", "a\0b", "x".repeat(4088)]) expect(encodeVolArgs(bad)).toBeNull();
  });

  test("vol_args_v2 for a snapshot: source fd, read-only flag, name at 56", () => {
    const args = encodeSnapshotArgs(7, "child", true)!;
    const view = new DataView(args.buffer);
    expect(view.getBigInt64(0, true)).toBe(7n);
    expect(view.getBigUint64(16, true)).toBe(2n);
    expect(new TextDecoder().decode(args.subarray(56, 61))).toBe("child");
    expect(new DataView(encodeSnapshotArgs(7, "c", false)!.buffer).getBigUint64(16, true)).toBe(0n);
  });

  test("qgroup limit sets max_rfer with its flag; null lifts it", () => {
    const view = new DataView(encodeQgroupLimit(1n << 30n).buffer);
    expect(view.getBigUint64(0, true)).toBe(0n);
    expect(view.getBigUint64(8, true)).toBe(1n);
    expect(view.getBigUint64(16, true)).toBe(1n << 30n);
    expect(new DataView(encodeQgroupLimit(null).buffer).getBigUint64(16, true)).toBe((1n << 64n) - 1n);
  });

  test("quota status search decodes the status item's flags, and nothing found as null", () => {
    const buf = encodeQuotaStatusSearch();
    expect(decodeQuotaStatus(buf)).toBeNull();
    const view = new DataView(buf.buffer);
    view.setUint32(64, 1, true);
    view.setUint32(104 + 24, 240, true);
    view.setUint32(104 + 28, 32, true);
    view.setBigUint64(104 + 32 + 16, 1n | 4n, true);
    expect(decodeQuotaStatus(buf)).toEqual({ enabled: true, inconsistent: true, rescanning: false, simple: false });
  });

  test("qgroup info and limit items", () => {
    const item = (type: number, words: bigint[]) => {
      const buf = new Uint8Array(4096);
      const view = new DataView(buf.buffer);
      view.setUint32(64, 1, true);
      view.setUint32(104 + 24, type, true);
      view.setUint32(104 + 28, words.length * 8, true);
      words.forEach((w, i) => view.setBigUint64(136 + i * 8, w, true));
      return buf;
    };
    const info = item(242, [9n, 4096n, 4096n, 1024n, 1024n]);
    expect(decodeQgroup(info, item(244, [1n, 65536n, 0n, 0n, 0n]))).toEqual({ referenced: 4096n, exclusive: 1024n, maxReferenced: 65536n });
    expect(decodeQgroup(info, item(244, [0n, 0n, 0n, 0n, 0n]))!.maxReferenced).toBeNull();
    expect(decodeQgroup(new Uint8Array(4096), info)).toBeNull();
  });

  test("fs info fields and flags", () => {
    const buf = new Uint8Array(1024);
    const view = new DataView(buf.buffer);
    view.setBigUint64(8, 2n, true);
    buf.set([...Array(16).keys()], 16);
    view.setUint32(32, 16384, true);
    view.setUint32(36, 4096, true);
    view.setUint16(44, 1, true);
    view.setBigUint64(56, 42n, true);
    expect(decodeFsInfo(buf)).toEqual({
      devices: 2, fsid: "00010203-0405-0607-0809-0a0b0c0d0e0f", nodeSize: 16384, sectorSize: 4096, checksum: "xxhash64", generation: 42n,
    });
    expect(formatUuid(new Uint8Array(16).fill(255))).toBe("ffffffff-ffff-ffff-ffff-ffffffffffff");
    expect(withReadonly(0x10n, true)).toBe(0x12n);
    expect(withReadonly(0x12n, false)).toBe(0x10n);
  });
});

describe.skipIf(btrfsUnavailable !== null)(`btrfs ioctls${btrfsUnavailable ? ` (skipped: ${btrfsUnavailable})` : ""}`, () => {
  let m: BtrfsMount;
  beforeAll(() => void (m = mountBtrfs({ quota: true, bytes: 1 << 30 })));
  afterAll(() => m?.close());

  test("statfs names the image btrfs", () => {
    expect(fsName(sys.statfs(m.dir).type)).toBe("btrfs");
  });

  test("subvolume create, snapshot (read-only and not), ids, flags", () => {
    sys.btrfsSubvolCreate(m.dir, "a");
    fs.writeFileSync(path.join(m.dir, "a", "f"), "hello");
    sys.btrfsSnapshot(path.join(m.dir, "a"), m.dir, "ro", true);
    sys.btrfsSnapshot(path.join(m.dir, "a"), m.dir, "rw", false);
    expect(fs.readFileSync(path.join(m.dir, "ro", "f"), "utf8")).toBe("hello");
    expect(sys.lstat(path.join(m.dir, "rw")).ino).toBe(256n);
    expect(sys.btrfsIsReadonly(path.join(m.dir, "ro"))).toBe(true);
    expect(sys.btrfsIsReadonly(path.join(m.dir, "rw"))).toBe(false);
    expect(() => fs.writeFileSync(path.join(m.dir, "ro", "g"), "x")).toThrow(/EROFS|read-only/);
    sys.btrfsSetReadonly(path.join(m.dir, "rw"), true);
    expect(btrfsProgs(["property", "get", "-ts", path.join(m.dir, "rw"), "ro"]).trim()).toBe("ro=true");
    sys.btrfsSetReadonly(path.join(m.dir, "rw"), false);
    expect(btrfsProgs(["property", "get", "-ts", path.join(m.dir, "rw"), "ro"]).trim()).toBe("ro=false");
    const ids = ["a", "ro", "rw"].map((n) => sys.btrfsSubvolId(path.join(m.dir, n)));
    const listed = btrfsProgs(["subvolume", "list", m.dir]);
    for (const [i, n] of ["a", "ro", "rw"].entries()) expect(listed).toContain(`ID ${ids[i]} gen`);
    expect(listed).toContain("path ro");
    expect(sys.btrfsSubvolId(m.dir)).toBe(5n);
  });

  test("destroy refuses a subvolume with one inside (ENOTEMPTY), then takes both", () => {
    sys.btrfsSubvolCreate(m.dir, "outer");
    sys.btrfsSubvolCreate(path.join(m.dir, "outer"), "inner");
    const err = (() => {
      try {
        sys.btrfsSubvolDestroy(m.dir, "outer");
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ErrnoError);
    expect((err as ErrnoError).code).toBe("ENOTEMPTY");
    sys.btrfsSubvolDestroy(path.join(m.dir, "outer"), "inner");
    sys.btrfsSubvolDestroy(m.dir, "outer");
    expect(fs.existsSync(path.join(m.dir, "outer"))).toBe(false);
  });

  test("the fd variants: subvolume id of an open directory, read-only flag, destroy by name in an open directory", () => {
    sys.btrfsSubvolCreate(m.dir, "fdv");
    fs.mkdirSync(path.join(m.dir, "fdv", "plain"));
    const top = sys.openDir(m.dir);
    const fd = sys.openDir(path.join(m.dir, "fdv"));
    const plain = sys.openDir(path.join(m.dir, "fdv", "plain"));
    try {
      expect(sys.btrfsSubvolIdFd(fd)).toBe(sys.btrfsSubvolId(path.join(m.dir, "fdv")));
      expect(sys.btrfsSubvolIdFd(plain)).toBe(sys.btrfsSubvolIdFd(fd));
      expect(sys.btrfsSubvolIdFd(top)).toBe(5n);
      sys.btrfsSetReadonlyFd(fd, true);
      expect(sys.btrfsIsReadonly(path.join(m.dir, "fdv"))).toBe(true);
      sys.btrfsSetReadonlyFd(fd, false);
      expect(sys.btrfsIsReadonly(path.join(m.dir, "fdv"))).toBe(false);
    } finally {
      sys.close(plain);
      sys.close(fd);
    }
    try {
      sys.btrfsSubvolDestroyAt(top, "fdv");
    } finally {
      sys.close(top);
    }
    expect(fs.existsSync(path.join(m.dir, "fdv"))).toBe(false);
  });

  test("destroy by id", () => {
    sys.btrfsSubvolCreate(m.dir, "byid");
    sys.btrfsSubvolDestroyById(m.dir, sys.btrfsSubvolId(path.join(m.dir, "byid")));
    expect(fs.existsSync(path.join(m.dir, "byid"))).toBe(false);
  });

  test("a symlink is never followed, and a bad name is EINVAL before any ioctl", () => {
    fs.symlinkSync(path.join(m.dir, "a"), path.join(m.dir, "link"));
    expect(() => sys.btrfsSnapshot(path.join(m.dir, "link"), m.dir, "via-link", false)).toThrow(/ELOOP|ENOTDIR/);
    expect(() => sys.btrfsSubvolCreate(path.join(m.dir, "link"), "x")).toThrow(/ELOOP|ENOTDIR/);
    expect(fs.existsSync(path.join(m.dir, "a", "x"))).toBe(false);
    expect(() => sys.btrfsSubvolCreate(m.dir, "a/b")).toThrow(/EINVAL/);
  });

  test("fs info agrees with btrfs-progs", () => {
    const info = sys.btrfsFsInfo(m.dir);
    expect(btrfsProgs(["filesystem", "show", m.dir])).toContain(`uuid: ${info.fsid}`);
    expect(info).toMatchObject({ devices: 1, nodeSize: 16384, sectorSize: 4096, checksum: "crc32c" });
  });

  test("quota status, a qgroup limit and its accounting; destroying the qgroup", async () => {
    expect(sys.btrfsQuotaStatus(m.dir)).toMatchObject({ enabled: true, inconsistent: false });
    sys.btrfsSubvolCreate(m.dir, "q");
    const q = path.join(m.dir, "q");
    sys.btrfsQgroupLimit(q, 32n << 20n);
    const id = sys.btrfsSubvolId(q);
    expect(sys.btrfsQgroup(m.dir, id)!.maxReferenced).toBe(32n << 20n);
    expect(btrfsProgs(["qgroup", "show", "-r", "--raw", m.dir])).toMatch(new RegExp(`0/${id}\\s+\\d+\\s+\\d+\\s+${32 << 20}`));
    // Writing past the limit fails with EDQUOT.
    expect(() => {
      const fd = fs.openSync(path.join(q, "big"), "w");
      try {
        const chunk = Buffer.alloc(1 << 20, 1);
        for (let i = 0; i < 64; i++) fs.writeSync(fd, chunk), fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }).toThrow(/EDQUOT|quota/);
    sys.btrfsQgroupLimit(q, null);
    expect(sys.btrfsQgroup(m.dir, id)!.maxReferenced).toBeNull();
    sys.btrfsSubvolDestroy(m.dir, "q");
    // The qgroup is busy until the cleaner has dropped the subvolume (Linux 6.7+ then deletes it itself).
    for (let i = 0; i < 100; i++) {
      try {
        sys.btrfsQgroupDestroy(m.dir, id);
        break;
      } catch (err) {
        if ((err as ErrnoError).code === "ENOENT") break;
        expect((err as ErrnoError).code).toBe("EBUSY");
        btrfsProgs(["filesystem", "sync", m.dir]);
        await Bun.sleep(100);
      }
    }
    expect(sys.btrfsQgroup(m.dir, id)).toBeNull();
  }, 20_000);

  test("quota status is null where quotas are off", () => {
    const off = mountBtrfs({ bytes: 256 << 20 });
    try {
      expect(sys.btrfsQuotaStatus(off.dir)).toBeNull();
      expect(sys.btrfsQgroup(off.dir, 5n)).toBeNull();
    } finally {
      off.close();
    }
  });
});
