/** Test helpers: a promise-returning client of strata's snapshotter socket (the generated gRPC client underneath). */
import * as grpc from "@grpc/grpc-js";
import {
  type Info, type ListSnapshotsResponse, SnapshotsClient,
} from "../../src/snapshotter/gen/github.com/containerd/containerd/api/services/snapshots/v1/snapshots.ts";
import type { Mount } from "../../src/snapshotter/gen/github.com/containerd/containerd/api/types/mount.ts";

/** A failed call as the client sees it. */
export interface CallError {
  code: grpc.status;
  details: string;
}

/** The ten calls, each a promise. */
export class SnapClient {
  readonly raw: SnapshotsClient;
  constructor(socket: string) {
    this.raw = new SnapshotsClient(`unix://${socket}`, grpc.credentials.createInsecure());
  }
  #call<T>(method: string, req: object): Promise<T> {
    return new Promise((resolve, reject) => {
      (this.raw as unknown as Record<string, (r: object, cb: (e: grpc.ServiceError | null, r: T) => void) => void>)[method]!.call(
        this.raw, { snapshotter: "strata", ...req }, (err, res) => (err ? reject(err) : resolve(res)),
      );
    });
  }
  async prepare(key: string, parent = "", labels: Record<string, string> = {}): Promise<Mount[]> {
    return (await this.#call<{ mounts: Mount[] }>("prepare", { key, parent, labels })).mounts;
  }
  async view(key: string, parent: string, labels: Record<string, string> = {}): Promise<Mount[]> {
    return (await this.#call<{ mounts: Mount[] }>("view", { key, parent, labels })).mounts;
  }
  async mounts(key: string): Promise<Mount[]> {
    return (await this.#call<{ mounts: Mount[] }>("mounts", { key })).mounts;
  }
  async commit(name: string, key: string, labels: Record<string, string> = {}): Promise<void> {
    await this.#call("commit", { name, key, labels });
  }
  async remove(key: string): Promise<void> {
    await this.#call("remove", { key });
  }
  async stat(key: string): Promise<Info> {
    return (await this.#call<{ info: Info }>("stat", { key })).info;
  }
  async update(info: Partial<Info> & { name: string }, paths?: string[]): Promise<Info> {
    const full = { parent: "", kind: 0, labels: {}, createdAt: undefined, updatedAt: undefined, ...info };
    return (await this.#call<{ info: Info }>("update", { info: full, updateMask: paths })).info;
  }
  async usage(key: string): Promise<{ size: number; inodes: number }> {
    return await this.#call("usage", { key });
  }
  async cleanup(): Promise<void> {
    await this.#call("cleanup", {});
  }
  /** Every Info List streams, across its messages. */
  list(...filters: string[]): Promise<Info[]> {
    return new Promise((resolve, reject) => {
      const out: Info[] = [];
      const stream = this.raw.list({ snapshotter: "strata", filters });
      stream.on("data", (m: ListSnapshotsResponse) => out.push(...m.info));
      stream.on("error", reject);
      stream.on("end", () => resolve(out));
    });
  }
  close(): void {
    this.raw.close();
  }
}

/** The gRPC code and message of a call that must fail. */
export async function failure(p: Promise<unknown>): Promise<CallError> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { code: e.code, details: e.details };
  }
  throw new Error("the call succeeded");
}
