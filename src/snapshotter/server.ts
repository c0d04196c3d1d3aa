/**
 * The snapshotter's gRPC front end: containerd's `containerd.services.snapshots.v1.Snapshots` on a
 * unix socket through @grpc/grpc-js, every request validated, every error through `errors.ts`.
 */
import * as grpc from "@grpc/grpc-js";
import { StrataError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { driverCollector } from "../core/metered-driver.ts";
import type { Metrics } from "../core/metrics.ts";
import type { MountSpec } from "../mount/spec.ts";
import { toGrpcError } from "./errors.ts";
import { parseFilters } from "./filters.ts";
import {
  Kind as WireKind, type Info as WireInfo, SnapshotsService, type SnapshotsServer,
} from "./gen/github.com/containerd/containerd/api/services/snapshots/v1/snapshots.ts";
import type { Mount } from "./gen/github.com/containerd/containerd/api/types/mount.ts";
import type { Info } from "./metadata.ts";
import { CommitRequest, CreateRequest, KeyRequest, ListRequest, UpdateRequest, parseSnapshotRequest } from "./schemas.ts";
import type { SnapshotService } from "./service.ts";

/** containerd's client sends up to 16 MiB; List answers in batches well below that. */
const MAX_MESSAGE = 16 << 20;
/** Snapshots per List message. */
const LIST_BATCH = 100;

function _mount(m: MountSpec): Mount {
  return { type: m.type, source: m.source, target: "", options: [...m.options] };
}

function _info(i: Info): WireInfo {
  return { name: i.key, parent: i.parent, kind: i.kind as unknown as WireKind, createdAt: i.created, updatedAt: i.updated, labels: i.labels };
}

/** The front end's name in metrics labels. */
const FRONTEND = "snapshotter";

/** The metrics outcome of a failed call: its error's kind. */
function _kind(err: unknown): string {
  return err instanceof StrataError ? err.kind : "internal";
}

/** The gRPC handlers of `service`; every call is counted and timed into `metrics` when given. */
export function snapshotsHandlers(service: SnapshotService, log: Logger, metrics?: Metrics): SnapshotsServer {
  metrics?.addCollector(driverCollector(() => service.driver));
  const seconds = (start: number) => (performance.now() - start) / 1000;
  const unary = <Req, Res>(method: string, fn: (req: Req) => Promise<Res> | Res): grpc.handleUnaryCall<Req, Res> =>
    (call, callback) => {
      const start = performance.now();
      const key = (call.request as { key?: string }).key ?? "";
      Promise.resolve()
        .then(() => fn(call.request))
        .then(
          (res) => {
            log.debug("call", { method, key, ms: Math.round(performance.now() - start) });
            metrics?.observeCall(FRONTEND, method, "ok", seconds(start));
            callback(null, res);
          },
          (err) => {
            const status = toGrpcError(err, `${method} of "${key}"`);
            log.warn("call failed", { method, key, code: grpc.status[status.code], err: status.details });
            metrics?.observeCall(FRONTEND, method, _kind(err), seconds(start));
            callback(status);
          },
        );
    };

  return {
    prepare: unary("Prepare", async (r) => {
      const req = parseSnapshotRequest("Prepare", CreateRequest, r);
      return { mounts: (await service.prepare(req.key, req.parent, { labels: req.labels })).map(_mount) };
    }),
    view: unary("View", async (r) => {
      const req = parseSnapshotRequest("View", CreateRequest, r);
      return { mounts: (await service.view(req.key, req.parent, { labels: req.labels })).map(_mount) };
    }),
    mounts: unary("Mounts", async (r) => ({ mounts: (await service.mounts(parseSnapshotRequest("Mounts", KeyRequest, r).key)).map(_mount) })),
    commit: unary("Commit", async (r) => {
      const req = parseSnapshotRequest("Commit", CommitRequest, r);
      await service.commit(req.name, req.key, { labels: req.labels });
      return {};
    }),
    remove: unary("Remove", async (r) => {
      await service.remove(parseSnapshotRequest("Remove", KeyRequest, r).key);
      return {};
    }),
    stat: unary("Stat", (r) => ({ info: _info(service.stat(parseSnapshotRequest("Stat", KeyRequest, r).key)) })),
    update: unary("Update", (r) => {
      const req = parseSnapshotRequest("Update", UpdateRequest, r);
      return { info: _info(service.update(req.info.name, req.info.labels, req.updateMask)) };
    }),
    list: (call) => {
      const start = performance.now();
      try {
        const req = parseSnapshotRequest("List", ListRequest, call.request);
        const all = service.list(parseFilters(req.filters)).map(_info);
        for (let i = 0; i < all.length; i += LIST_BATCH) call.write({ info: all.slice(i, i + LIST_BATCH) });
        call.end();
        metrics?.observeCall(FRONTEND, "List", "ok", seconds(start));
      } catch (err) {
        const status = toGrpcError(err, "List");
        log.warn("call failed", { method: "List", code: grpc.status[status.code], err: status.details });
        metrics?.observeCall(FRONTEND, "List", _kind(err), seconds(start));
        call.emit("error", status);
      }
    },
    usage: unary("Usage", async (r) => await service.usage(parseSnapshotRequest("Usage", KeyRequest, r).key)),
    cleanup: unary("Cleanup", async () => {
      await service.cleanup();
      return {};
    }),
  };
}

/** A listening snapshotter server. */
export interface SnapshotServer {
  /** Stop accepting, let calls in flight finish (up to `graceMs`), then close. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Serve `service` on the unix socket `socketPath` (which must not exist).
 * @example
 * const server = await listenSnapshotter(service, "/run/strata/snapshotter.sock", log);
 */
export async function listenSnapshotter(service: SnapshotService, socketPath: string, log: Logger, metrics?: Metrics): Promise<SnapshotServer> {
  const server = new grpc.Server({ "grpc.max_receive_message_length": MAX_MESSAGE, "grpc.max_send_message_length": MAX_MESSAGE });
  server.addService(SnapshotsService, snapshotsHandlers(service, log, metrics));
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
  });
  return {
    close: (graceMs = 10_000) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
