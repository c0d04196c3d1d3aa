/**
 * The EROFS writer from a directory tree (a container's upper dir): the image, fsck'd and mounted,
 * shows the tree as it was — sockets, whiteouts and hardlinks included, every time to the
 * nanosecond — without overlay's own bookkeeping attributes.
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeImageFromDir } from "../../src/erofs/from-dir.ts";
import { snapshot } from "../helpers/tree.ts";
import { file } from "../helpers/layer-tar.ts";
import { applyItems, emptyDir, pattern, removeRootsAfterEach, richLayer, sys, tempRoot, ts } from "../archive/layer-fixtures.ts";
import { imageSnapshot, SKIP_REASON } from "./erofs-fixtures.ts";
import { randomLayer } from "./random-layer.ts";

removeRootsAfterEach();

/** A unix socket at `p`, left behind by a process that bound it and exited. */
function makeSocket(p: string): void {
  const r = spawnSync("python3", ["-c", "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])", p]);
  if (r.status !== 0) throw new Error(`could not make a socket: ${r.stderr}`);
}

async function imageOfDir(dir: string): Promise<string> {
  const image = path.join(tempRoot("strata-erofs-dir-"), "upper.erofs");
  await writeImageFromDir(dir, image, { sys, sync: true });
  return image;
}

describe(`writeImageFromDir${SKIP_REASON ? ` (skipped: ${SKIP_REASON})` : ""}`, () => {
  test.skipIf(!!SKIP_REASON)("copies every inode kind, hardlinks, xattrs and times exactly; keeps opaque, drops overlay's bookkeeping", async () => {
    const dir = emptyDir("upper");
    await applyItems(dir, [...richLayer(), entry0(".wh.gone"), entry0("opq/.wh..wh..opq"), file("opq/x", "x")], { whiteouts: "overlay" });
    makeSocket(path.join(dir, "run/sock"));
    sys.lsetxattr(path.join(dir, "bin"), "trusted.overlay.origin", Uint8Array.of(0, 1, 2));
    sys.lsetxattr(path.join(dir, "home"), "trusted.overlay.opaque", new TextEncoder().encode("x"));
    sys.lsetxattr(path.join(dir, "home"), "trusted.overlay.impure", new TextEncoder().encode("y"));
    fs.mkdirSync(path.join(dir, "many"));
    for (let i = 0; i < 700; i++) fs.writeFileSync(path.join(dir, "many", `f${i}-${"x".repeat(i % 50)}`), pattern(i * 13));
    sys.lutimes(path.join(dir, "many"), ts(1_234, 5), ts(1_234, 5));
    sys.lutimes(dir, ts(99, 1), ts(99, 1));

    const want = snapshot(dir, sys, { dirMtimes: true });
    delete want["/bin"].xattrs["trusted.overlay.origin"];
    delete want["/home"].xattrs["trusted.overlay.opaque"];
    delete want["/home"].xattrs["trusted.overlay.impure"];
    const got = await imageSnapshot(await imageOfDir(dir));
    expect(got).toEqual(want);
    expect(got["/run/sock"].type).toBe("socket");
    expect(got["/gone"]).toMatchObject({ type: "char", rdev: 0 });
    expect(got["/opq"].xattrs["trusted.overlay.opaque"]).toBe("79");
    expect(got["/bin/tool"].links).toEqual(["/bin/tool", "/bin/tool-link"]);
    expect(got["/"].mtimeNs).toBe("99000000001");
  });

  test.skipIf(!!SKIP_REASON)("random layers applied to a directory image to the same tree", async () => {
    for (const seed of [7, 8, 9]) {
      const dir = emptyDir("layer");
      await applyItems(dir, randomLayer(seed), { whiteouts: "overlay" });
      const want = snapshot(dir, sys, { dirMtimes: true });
      expect({ seed, got: await imageSnapshot(await imageOfDir(dir)) }).toEqual({ seed, got: want });
    }
  });

  test("refuses a root that is not a directory and leaves no image", async () => {
    const root = tempRoot();
    fs.writeFileSync(path.join(root, "f"), "x");
    const image = path.join(root, "out.erofs");
    await expect(writeImageFromDir(path.join(root, "f"), image, { sys })).rejects.toThrow(/not a directory/);
    expect(fs.existsSync(image)).toBe(false);
  });
});

function entry0(name: string) {
  return { name, type: "file" as const, mode: 0, uid: 0, gid: 0, size: 0, mtime: ts(1), linkname: "", devmajor: 0, devminor: 0, xattrs: new Map() };
}
