/**
 * moby's NaiveDiffDriver: the diff half of the Driver interface for a driver that only knows
 * directories. Diff and Changes compare the layer's directory with its parent's (both from
 * `get`), ApplyDiff extracts into the layer's directory. No lock is held here, and none across a
 * Diff stream: the daemon applies a commit's Diff to another layer while it still streams.
 */
import { applyLayer } from "../archive/apply.ts";
import { changesDirs } from "../archive/changes.ts";
import { exportChanges } from "../archive/export.ts";
import { changesSize } from "../archive/size.ts";
import { PROTO_METHODS, type Change, type DiffDriver, type Driver, type IdMap, type ProtoDriver } from "./driver.ts";
import { NotFoundError } from "./errors.ts";
import { assertLayerId } from "./layer-id.ts";
import type { Sys } from "../sys/types.ts";

/** What `withNaiveDiff` needs: a ProtoDriver, any diff methods it has natively, and libc. */
export interface NaiveDiffBase extends ProtoDriver, Partial<DiffDriver> {
  readonly sys: Sys;
  /** Container → host UID map (userns-remap): ApplyDiff shifts owners to the host, Diff back. */
  readonly uidMaps?: IdMap[];
  /** Container → host GID map. */
  readonly gidMaps?: IdMap[];
  /**
   * The parent a layer was created on. When given, Diff/Changes/DiffSize called with parent ""
   * compare against it; without it "" means "no parent" and everything counts as added (what
   * the daemon means for a base layer: it always names the parent otherwise).
   */
  parentOf?(id: string): Promise<string>;
}

/**
 * A complete Driver: `proto`'s own methods, plus naive versions of the diff methods it lacks.
 * @example
 * export async function initVfs(config: DriverConfig): Promise<Driver> {
 *   return withNaiveDiff(new VfsDriver(config)); // VfsDriver has `sys` and the ProtoDriver methods
 * }
 */
export function withNaiveDiff(proto: NaiveDiffBase): Driver {
  const naive = new _NaiveDiff(proto);
  const passed = Object.fromEntries(PROTO_METHODS.map((m) => [m, (proto[m] as (...a: unknown[]) => unknown).bind(proto)]));
  const driver: Driver = {
    ...(passed as Pick<ProtoDriver, (typeof PROTO_METHODS)[number]>),
    get name() {
      return proto.name;
    },
    diff: proto.diff ? (id, parent) => proto.diff!(id, parent) : (id, parent) => naive.diff(id, parent),
    changes: proto.changes ? (id, parent) => proto.changes!(id, parent) : (id, parent) => naive.changes(id, parent),
    applyDiff: proto.applyDiff
      ? (id, parent, tar) => proto.applyDiff!(id, parent, tar)
      : (id, _parent, tar) => naive.applyDiff(id, tar),
    // moby's DiffSize asks the driver's Changes: a native one is used when the proto has it.
    diffSize: proto.diffSize
      ? (id, parent) => proto.diffSize!(id, parent)
      : async (id, parent) => naive.diffSize(id, await driver.changes(id, parent)),
  };
  return driver;
}

/**
 * `stream`, calling `release` once when it ends, fails or is cancelled (before the reader
 * learns of the end). A failing release is swallowed: the diff itself has been delivered.
 */
function _releaseWhenSettled(stream: ReadableStream<Uint8Array>, release: () => Promise<void>): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  let released: Promise<void> | undefined;
  const once = () => (released ??= release().catch(() => {}));
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let result: Awaited<ReturnType<typeof reader.read>>;
        try {
          result = await reader.read();
        } catch (err) {
          await once();
          return controller.error(err);
        }
        if (!result.done) return controller.enqueue(result.value);
        await once();
        controller.close();
      },
      async cancel(reason) {
        try {
          await reader.cancel(reason);
        } finally {
          await once();
        }
      },
    },
    // Pull-through: the inner tar stream already buffers; this one holds nothing of its own.
    { highWaterMark: 0 },
  );
}

class _NaiveDiff {
  #proto: NaiveDiffBase;

  constructor(proto: NaiveDiffBase) {
    this.#proto = proto;
  }

  async diff(id: string, parent: string): Promise<ReadableStream<Uint8Array>> {
    const proto = this.#proto;
    const parentId = await this.#parentId(id, parent);
    const layer = await proto.get(id, "");
    let tar: ReadableStream<Uint8Array>;
    try {
      // The parent is only needed for the walk; the export reads the layer alone (as moby does).
      const changes = await this.#changesOf(layer, parentId);
      tar = exportChanges(layer, changes, proto.sys, { uidMaps: proto.uidMaps, gidMaps: proto.gidMaps });
    } catch (err) {
      await proto.put(id);
      throw err;
    }
    return _releaseWhenSettled(tar, () => proto.put(id));
  }

  async changes(id: string, parent: string): Promise<Change[]> {
    const parentId = await this.#parentId(id, parent);
    const layer = await this.#proto.get(id, "");
    try {
      return await this.#changesOf(layer, parentId);
    } finally {
      await this.#proto.put(id);
    }
  }

  async diffSize(id: string, changes: Change[]): Promise<number> {
    const layer = await this.#proto.get(id, "");
    try {
      return await changesSize(this.#proto.sys, layer, changes);
    } finally {
      await this.#proto.put(id);
    }
  }

  async applyDiff(id: string, tar: ReadableStream<Uint8Array>): Promise<number> {
    const proto = this.#proto;
    const dir = await proto.get(id, "");
    try {
      return await applyLayer(dir, tar, { sys: proto.sys, whiteouts: "delete", uidMaps: proto.uidMaps, gidMaps: proto.gidMaps });
    } catch (err) {
      // Unblock the daemon's upload if the apply stopped before the end of the archive.
      await tar.cancel().catch(() => {});
      throw err;
    } finally {
      await proto.put(id);
    }
  }

  /** The changes of the directory `layer` against the layer `parentId` ("" = none), holding the parent only meanwhile. */
  async #changesOf(layer: string, parentId: string): Promise<Change[]> {
    const sys = this.#proto.sys;
    if (parentId === "") return await changesDirs(layer, null, sys);
    const parentDir = await this.#proto.get(parentId, "");
    try {
      return await changesDirs(layer, parentDir, sys);
    } finally {
      await this.#proto.put(parentId);
    }
  }

  /** The parent to compare against, checked before the layer is mounted: a bad parent must not leave a mount's traces. */
  async #parentId(id: string, parent: string): Promise<string> {
    if (parent !== "") {
      assertLayerId(parent, "parent layer ID");
      if (!(await this.#proto.exists(parent))) throw new NotFoundError(`Cannot compare layer "${id}" with "${parent}": the parent does not exist`);
      return parent;
    }
    if (!this.#proto.parentOf) return parent;
    return await this.#proto.parentOf(id);
  }
}
