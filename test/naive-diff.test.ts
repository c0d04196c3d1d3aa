import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { copyTree } from "../src/archive/copy-tree.ts";
import { readTar } from "../src/archive/tar-reader.ts";
import type { Change, CreateOpts } from "../src/core/driver.ts";
import { NotFoundError } from "../src/core/errors.ts";
import { type NaiveDiffBase, withNaiveDiff } from "../src/core/naive-diff.ts";
import { createSys } from "../src/sys/bun.ts";
import { bytesOf, file, makeTar, streamOf } from "./helpers/layer-tar.ts";

const sys = createSys();
let homes: string[] = [];
afterEach(() => {
  for (const h of homes) fs.rmSync(h, { recursive: true, force: true });
  homes = [];
});

/** A ProtoDriver of plain directories that counts get/put references and logs calls. */
class DirProto implements NaiveDiffBase {
  readonly name = "dirs";
  readonly sys = sys;
  readonly refs = new Map<string, number>();
  readonly parents = new Map<string, string>();
  readonly log: string[] = [];
  readonly home = fs.mkdtempSync(path.join(os.tmpdir(), "strata-naive-"));
  constructor() {
    homes.push(this.home);
  }
  async status(): Promise<Array<[string, string]>> {
    return [];
  }
  async getMetadata() {
    return {};
  }
  async cleanup() {}
  async create(id: string, parent: string, _opts: CreateOpts) {
    if (parent) await copyTree(path.join(this.home, parent), path.join(this.home, id), sys);
    else fs.mkdirSync(path.join(this.home, id));
    this.parents.set(id, parent);
  }
  createReadWrite(id: string, parent: string, opts: CreateOpts) {
    return this.create(id, parent, opts);
  }
  async remove(id: string) {
    fs.rmSync(path.join(this.home, id), { recursive: true, force: true });
  }
  async get(id: string) {
    if (!fs.existsSync(path.join(this.home, id))) throw new NotFoundError(`Cannot get layer "${id}": it does not exist`);
    this.log.push(`get ${id}`);
    this.refs.set(id, (this.refs.get(id) ?? 0) + 1);
    return path.join(this.home, id);
  }
  async put(id: string) {
    this.log.push(`put ${id}`);
    this.refs.set(id, (this.refs.get(id) ?? 0) - 1);
  }
  async mounts(id: string, readonly: boolean) {
    return [{ type: "bind", source: path.join(this.home, id), options: ["rbind", readonly ? "ro" : "rw"] }];
  }
  async commit() {}
  async usage() {
    return { size: 0, inodes: 0 };
  }
  async layerIds() {
    return fs.readdirSync(this.home);
  }
  async exists(id: string) {
    return fs.existsSync(path.join(this.home, id));
  }
  capabilities() {
    return { ReproducesExactDiffs: false };
  }
  /** Total references still held. */
  held(): number {
    return [...this.refs.values()].reduce((a, b) => a + b, 0);
  }
}

async function names(stream: ReadableStream<Uint8Array>): Promise<string[]> {
  const out: string[] = [];
  for await (const e of readTar(stream)) out.push(e.header.name);
  return out;
}

/** A proto with a base layer "base" and a child "c" that adds a file and deletes one. */
async function setup(proto = new DirProto()) {
  const driver = withNaiveDiff(proto);
  await driver.create("base", "", {});
  await driver.applyDiff("base", "", streamOf(await makeTar([file("keep", "k"), file("gone", "g")])));
  await driver.create("c", "base", {});
  fs.writeFileSync(path.join(proto.home, "c/new"), "new!");
  fs.rmSync(path.join(proto.home, "c/gone"));
  return { proto, driver };
}

describe("withNaiveDiff", () => {
  test("diffs a layer against the parent it is given, releasing both layers", async () => {
    const { proto, driver } = await setup();
    const stream = await driver.diff("c", "base");
    // The parent is only needed for the walk: released before the stream is read (as moby does).
    expect(proto.refs.get("base")).toBe(0);
    expect(proto.refs.get("c")).toBe(1);
    expect(await names(stream)).toEqual([".wh.gone", "new"]);
    expect(proto.held()).toBe(0);
    expect(await driver.changes("c", "base")).toEqual([{ Path: "/gone", Kind: 2 }, { Path: "/new", Kind: 1 }]);
    expect(await driver.diffSize("c", "base")).toBe(4);
    expect(proto.held()).toBe(0);
  });

  test("releases the layer when the reader cancels the Diff", async () => {
    const { proto, driver } = await setup();
    fs.writeFileSync(path.join(proto.home, "c/big"), Buffer.alloc(16 << 20));
    const reader = (await driver.diff("c", "base")).getReader();
    await reader.read();
    expect(proto.refs.get("c")).toBe(1);
    await reader.cancel();
    expect(proto.held()).toBe(0);
  });

  test("releases the layer when the Diff stream fails", async () => {
    const { proto, driver } = await setup();
    const maps = [{ container_id: 0, host_id: 100_000, size: 10 }];
    const mapped = withNaiveDiff(Object.assign(proto, { uidMaps: maps, gidMaps: maps }));
    // Files owned by host root cannot be expressed in the container's ids: the stream errors.
    await expect(bytesOf(await mapped.diff("c", "base"))).rejects.toThrow("cannot be mapped");
    expect(proto.held()).toBe(0);
  });

  test("treats an empty parent as none, unless the proto says whose child the layer is", async () => {
    const { proto } = await setup();
    expect(await names(await withNaiveDiff(proto).diff("c", ""))).toEqual(["keep", "new"]);
    const withParents = withNaiveDiff(Object.assign(proto, { parentOf: async (id: string) => proto.parents.get(id) ?? "" }));
    expect(await names(await withParents.diff("c", ""))).toEqual([".wh.gone", "new"]);
    expect(await withParents.changes("c", "")).toEqual([{ Path: "/gone", Kind: 2 }, { Path: "/new", Kind: 1 }]);
  });

  test("streams a Diff into another layer's ApplyDiff at the same time (docker commit)", async () => {
    const { proto, driver } = await setup();
    fs.writeFileSync(path.join(proto.home, "c/big"), Buffer.alloc(32 << 20, 3));
    const diff = await driver.diff("c", "base");
    await driver.create("committed", "base", {});
    expect(await driver.applyDiff("committed", "base", diff)).toBe((32 << 20) + 4);
    expect(fs.readdirSync(path.join(proto.home, "committed")).sort()).toEqual(["big", "keep", "new"]);
    expect(proto.held()).toBe(0);
  });

  test("releases the layer and stops reading when ApplyDiff fails", async () => {
    const { proto, driver } = await setup();
    await driver.create("bad", "", {});
    let cancelled = false;
    const tar = await makeTar([file("../escape", "x")]);
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(tar);
      },
      cancel() {
        cancelled = true;
      },
    });
    await expect(driver.applyDiff("bad", "", stream)).rejects.toThrow("points outside the layer");
    expect(cancelled).toBe(true);
    expect(proto.held()).toBe(0);
  });

  test("keeps the diff methods the proto has, and sizes with its Changes", async () => {
    const proto = new DirProto();
    const own: Change[] = [{ Path: "/x", Kind: 1 }];
    const driver = withNaiveDiff(Object.assign(proto, { changes: async () => own }));
    await driver.create("l", "", {});
    fs.writeFileSync(path.join(proto.home, "l/x"), "12345");
    fs.writeFileSync(path.join(proto.home, "l/y"), "not counted");
    expect(await driver.changes("l", "")).toBe(own);
    expect(await driver.diffSize("l", "")).toBe(5);
    expect(driver.name).toBe("dirs");
  });
});
