/**
 * How the gRPC server library was chosen: one Stat round trip over a unix socket, served by
 * @grpc/grpc-js (what strata uses) and by a bare node:http2 gRPC handler (the floor any library
 * adds to), the same client and the same generated codec for both, interleaved rounds, medians.
 *
 *   node_modules/.bin/bun bench/grpc-roundtrip.ts [--calls 2000] [--rounds 5]
 *   node_modules/.bin/deno run -A bench/grpc-roundtrip.ts     (the servers on Deno's node:http2)
 */
import * as grpc from "@grpc/grpc-js";
import * as fs from "node:fs";
import * as http2 from "node:http2";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import {
  SnapshotsClient, SnapshotsService, StatSnapshotRequest, StatSnapshotResponse,
} from "../src/snapshotter/gen/github.com/containerd/containerd/api/services/snapshots/v1/snapshots.ts";

const { values } = parseArgs({ options: { calls: { type: "string", default: "2000" }, rounds: { type: "string", default: "5" } } });
const CALLS = Number(values.calls);
const ROUNDS = Number(values.rounds);
const INFO = { name: "k", parent: "p", kind: 3, createdAt: { seconds: 1, nanos: 2 }, updatedAt: { seconds: 1, nanos: 2 }, labels: { a: "b" } };

async function grpcJsServer(socket: string): Promise<() => void> {
  const server = new grpc.Server();
  const unimplemented = () => { throw new Error("unused"); };
  const impl = Object.fromEntries(Object.keys(SnapshotsService).map((k) => [k, unimplemented])) as unknown as grpc.UntypedServiceImplementation;
  impl.stat = ((_call: unknown, cb: grpc.sendUnaryData<StatSnapshotResponse>) => cb(null, { info: INFO })) as grpc.handleUnaryCall<unknown, unknown>;
  server.addService(SnapshotsService, impl);
  await new Promise<void>((r, j) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? j(e) : r())));
  return () => server.forceShutdown();
}

async function rawHttp2Server(socket: string): Promise<() => void> {
  const server = http2.createServer();
  server.on("stream", (stream: http2.ServerHttp2Stream) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      const body = Buffer.concat(chunks);
      StatSnapshotRequest.decode(body.subarray(5, 5 + body.readUInt32BE(1)));
      const msg = StatSnapshotResponse.encode({ info: INFO }).finish();
      const frame = Buffer.alloc(5 + msg.length);
      frame.writeUInt32BE(msg.length, 1);
      frame.set(msg, 5);
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(frame);
    });
  });
  await new Promise<void>((r) => server.listen(socket, r));
  return () => server.close();
}

async function roundTrips(socket: string): Promise<number[]> {
  const client = new SnapshotsClient(`unix://${socket}`, grpc.credentials.createInsecure());
  const stat = () => new Promise<void>((r, j) => client.stat({ snapshotter: "strata", key: "k" }, (e) => (e ? j(e) : r())));
  for (let i = 0; i < 200; i++) await stat(); // warm up
  const ms: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const t = performance.now();
    await stat();
    ms.push(performance.now() - t);
  }
  client.close();
  return ms.sort((a, b) => a - b);
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "strata-grpc-bench-"));
const servers = { "@grpc/grpc-js": grpcJsServer, "bare node:http2": rawHttp2Server } as const;
const results = new Map<string, { p50: number[]; p99: number[] }>();
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, start] of Object.entries(servers)) {
      const socket = path.join(dir, `${round}-${name.replace(/\W/g, "")}.sock`);
      const stop = await start(socket);
      const ms = await roundTrips(socket);
      stop();
      const r = results.get(name) ?? { p50: [], p99: [] };
      r.p50.push(ms[Math.floor(ms.length / 2)]!);
      r.p99.push(ms[Math.floor(ms.length * 0.99)]!);
      results.set(name, r);
    }
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const base = median(results.get("bare node:http2")!.p50);
console.log(`Stat round trip, ${CALLS} calls x ${ROUNDS} rounds, ${"Bun" in globalThis ? "Bun" : "Deno"} server and client on one host`);
console.log("| server | p50 | p99 | p50 vs bare http2 |\n|---|---|---|---|");
for (const [name, r] of results) {
  const p50 = median(r.p50);
  console.log(`| ${name} | ${(p50 * 1000).toFixed(0)} µs | ${(median(r.p99) * 1000).toFixed(0)} µs | ${(p50 / base).toFixed(2)}x |`);
}
process.exit(0);
