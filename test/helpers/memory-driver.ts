/** A tiny in-memory Driver for protocol and library tests: records calls, keeps layers in a Map. */
import type { Change, CreateOpts, Driver } from "../../src/core/driver.ts";
import { AlreadyExistsError, NotFoundError } from "../../src/core/errors.ts";

/** A driver keeping layer "contents" as a byte count; `calls` logs every call. */
export class MemoryDriver implements Driver {
  readonly name = "memory";
  readonly layers = new Map<string, { parent: string; bytes: number; refs: number; opts: CreateOpts }>();
  readonly calls: string[] = [];

  async status() {
    return [["Layers", String(this.layers.size)]] as Array<[string, string]>;
  }
  async getMetadata(id: string) {
    this.#must(id);
    return { Dir: `/memory/${id}` };
  }
  async cleanup() {
    this.calls.push("cleanup");
  }
  async create(id: string, parent: string, opts: CreateOpts) {
    this.calls.push(`create ${id} ${parent}`);
    if (this.layers.has(id)) throw new AlreadyExistsError(`Cannot create layer "${id}": it already exists`);
    if (parent) this.#must(parent);
    this.layers.set(id, { parent, bytes: 0, refs: 0, opts });
  }
  createReadWrite(id: string, parent: string, opts: CreateOpts) {
    return this.create(id, parent, opts);
  }
  async remove(id: string) {
    this.calls.push(`remove ${id}`);
    this.layers.delete(id);
  }
  async get(id: string) {
    this.#must(id).refs++;
    return `/memory/${id}`;
  }
  async put(id: string) {
    this.#must(id).refs--;
  }
  async exists(id: string) {
    return this.layers.has(id);
  }
  capabilities() {
    return { ReproducesExactDiffs: false };
  }
  async mounts(id: string, readonly: boolean) {
    this.#must(id);
    return [{ type: "bind", source: `/memory/${id}`, options: ["rbind", readonly ? "ro" : "rw"] }];
  }
  async commit(id: string) {
    this.calls.push(`commit ${id}`);
    this.#must(id);
  }
  async usage(id: string) {
    return { size: this.#must(id).bytes, inodes: 1 };
  }
  async layerIds() {
    return [...this.layers.keys()];
  }
  async diff(id: string) {
    const bytes = this.#must(id).bytes;
    return new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new Uint8Array(bytes).fill(7));
        c.close();
      },
    });
  }
  async changes(id: string): Promise<Change[]> {
    this.#must(id);
    return [{ Path: "/added", Kind: 1 }];
  }
  async applyDiff(id: string, _parent: string, tar: ReadableStream<Uint8Array>) {
    const layer = this.#must(id);
    for await (const chunk of tar) layer.bytes += chunk.byteLength;
    return layer.bytes;
  }
  async diffSize(id: string) {
    return this.#must(id).bytes;
  }
  #must(id: string) {
    const layer = this.layers.get(id);
    if (!layer) throw new NotFoundError(`Layer "${id}" does not exist`);
    return layer;
  }
}
