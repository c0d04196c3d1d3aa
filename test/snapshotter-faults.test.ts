/**
 * The snapshotter SIGKILLed at each of its fault points (`STRATA_FAULT`), then started again on the
 * same root: the call in flight is either wholly done or wholly undone, nothing half made stays
 * visible, and every other snapshot is intact. Run from source on Bun and as the compiled binary.
 */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { status } from "@grpc/grpc-js";
import { FAULT } from "../src/core/fault.ts";
import { createSys } from "../src/sys/bun.ts";
import { overlayUnavailable } from "./helpers/overlay-probe.ts";
import { unmountBelow } from "./helpers/mounts.ts";
import { SnapClient, failure } from "./helpers/snapshot-client.ts";
import { waitFor } from "./e2e/command.ts";
import { acceptsConnections } from "./e2e/containerd.ts";
import { PluginProcess } from "./e2e/plugin-process.ts";

const REPO = path.resolve(import.meta.dir, "..");
const sys = createSys();
const VARIANTS = [
  { name: "bun", argv: [path.join(REPO, "node_modules/.bin/bun"), "src/main.bun.ts"], skip: null as string | null },
  {
    name: "binary",
    argv: [path.join(REPO, "dist/strata")],
    skip: fs.existsSync(path.join(REPO, "dist/strata")) ? null : "dist/strata is not built (./compile.sh)",
  },
];
const overlaySkip = overlayUnavailable(sys);

/** The last process started: a failed test leaves it to afterEach. */
let live: PluginProcess | undefined;

/** One snapshotter process on `root` (its socket `s.sock`, its log `log`), ready once the socket accepts. */
function snapshotter(argv: string[], root: string, fault?: string): { proc: PluginProcess; client: () => SnapClient } {
  const socket = path.join(root, "s.sock");
  const proc = new PluginProcess({
    argv: [...argv, "snapshotter", "--driver", "overlay", "--root", path.join(root, "store"), "--socket", socket, "--log-level", "debug"],
    socket,
    logFile: path.join(root, "log"),
    cwd: REPO,
    env: { STRATA_FAULT: fault ?? "" },
    readyTimeoutMs: 20_000,
    label: "The snapshotter",
    ready: { probe: () => acceptsConnections(socket), condition: `accept connections on ${socket}` },
  });
  live = proc;
  return { proc, client: () => new SnapClient(socket) };
}

const named = (name: string, skip: string | null) => (skip === null ? name : `${name} (skipped: ${skip})`);

/** Each point, the call that reaches it, and what a restart must find. */
const CASES: Array<{ point: string; call: (c: SnapClient) => Promise<unknown>; after: (c: SnapClient, layers: () => string[]) => Promise<void> }> = [
  {
    point: FAULT.snapshotCreateBeforeRecord,
    call: (c) => c.prepare("new", "Base"),
    after: async (c, layers) => {
      // Undone: the key is free again and its layer gone.
      expect((await failure(c.stat("new"))).code).toBe(status.NOT_FOUND);
      expect(layers()).toEqual(["1"]);
      await c.prepare("new", "Base");
    },
  },
  {
    point: FAULT.snapshotCommitBeforeRecord,
    call: (c) => c.prepare("active", "Base").then(() => c.commit("Done", "active")),
    after: async (c) => {
      // Not done: still active (its layer sealed, which an active snapshot survives), and Commit works again.
      expect((await c.stat("active")).kind).toBe(2);
      expect((await failure(c.stat("Done"))).code).toBe(status.NOT_FOUND);
      await c.commit("Done", "active");
      expect((await c.stat("Done")).kind).toBe(3);
    },
  },
  {
    point: FAULT.snapshotRemoveBeforeLayer,
    call: (c) => c.prepare("doomed", "Base").then(() => c.remove("doomed")),
    after: async (c, layers) => {
      // Done: Remove had answered nothing, but the record said "removing"; the restart finished it.
      expect((await failure(c.stat("doomed"))).code).toBe(status.NOT_FOUND);
      expect(layers()).toEqual(["1"]);
    },
  },
  {
    point: FAULT.snapshotRemoveBeforeRecord,
    call: (c) => c.prepare("doomed", "Base").then(() => c.remove("doomed")),
    after: async (c, layers) => {
      expect((await failure(c.stat("doomed"))).code).toBe(status.NOT_FOUND);
      expect(layers()).toEqual(["1"]);
      await c.prepare("doomed", "Base");
    },
  },
];

for (const v of VARIANTS) {
  describe(`snapshotter SIGKILLed at a fault point (${v.name})`, () => {
    let root: string | undefined;
    afterEach(async () => {
      await live?.kill();
      if (!root) return;
      unmountBelow(sys, root);
      fs.rmSync(root, { recursive: true, force: true });
      root = undefined;
    });

    for (const c of CASES) {
      const skip = v.skip ?? overlaySkip;
      test.skipIf(skip !== null)(named(c.point, skip), async () => {
        root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-snapfault-"));
        const layers = () => fs.readdirSync(path.join(root!, "store", "overlay")).filter((n) => !n.startsWith(".")).sort();
        // A committed base, made by a process without a fault armed.
        let { proc, client: connect } = snapshotter(v.argv, root);
        await proc.start();
        let client = connect();
        await client.prepare("base");
        await client.commit("Base", "base", { keep: "me" });
        client.close();
        expect(await proc.stop()).toEqual({ code: 0, signal: null, forced: false });

        ({ proc, client: connect } = snapshotter(v.argv, root, c.point));
        await proc.start();
        client = connect();
        await expect(c.call(client)).rejects.toBeDefined();
        // It killed itself at the point (kill() of a dead process only reports how it ended).
        await waitFor(() => !proc.running, { timeoutMs: 10_000, message: `the snapshotter did not die at ${c.point}`, context: () => proc.logTail() });
        expect(await proc.kill()).toEqual({ code: null, signal: "SIGKILL", forced: false });
        client.close();

        ({ proc, client: connect } = snapshotter(v.argv, root));
        await proc.start();
        client = connect();
        await c.after(client, layers);
        expect((await client.stat("Base")).labels).toEqual({ keep: "me" });
        client.close();
        expect(await proc.stop()).toEqual({ code: 0, signal: null, forced: false });
      }, 60_000);
    }
  });
}
