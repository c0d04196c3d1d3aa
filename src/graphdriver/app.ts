/**
 * The protocol app: every GraphDriver route, request validation, and the one place errors become
 * `{"Err": message}`. Knows nothing about runtimes or sockets; `serve/*.ts` put it on a socket.
 */
import { Hono, type Context } from "hono";
import type { Driver } from "../core/driver.ts";
import { InvalidRequestError, NotFoundError, StrataError } from "../core/errors.ts";
import { driverCollector, meteredDriver } from "../core/metered-driver.ts";
import type { Metrics } from "../core/metrics.ts";
import { toErrResponse } from "./errors.ts";
import { silentLogger, type Logger } from "../core/log.ts";
import {
  ApplyDiffQuery, CreateRequest, DiffRequest, GetRequest, IdRequest, InitRequest, PLUGIN_MEDIA_TYPE,
  parseRequest, readJsonBody,
} from "./protocol.ts";

/** Where the app gets its driver: set up by Init, or fixed for library users. */
export interface DriverSource {
  /** Handle `/GraphDriver.Init`. */
  init(req: InitRequest): Promise<void>;
  /** The driver serving calls; throws NotInitializedError before Init. */
  current(): Driver;
}

/** A source serving one ready-made driver; Init is accepted and ignored. */
export function fixedSource(driver: Driver): DriverSource {
  return { init: async () => {}, current: () => driver };
}

const JSON_HEADERS = { "content-type": PLUGIN_MEDIA_TYPE };

function _json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: JSON_HEADERS });
}

/** What a call records for its log line. */
type CallVars = { Variables: { layerId: string; errMessage: string; errKind: string } };

/** The front end's name in metrics labels. */
const FRONTEND = "graphdriver";

/**
 * The Hono app for a driver source.
 * @example
 * const app = createApp(fixedSource(myDriver));
 * await app.fetch(new Request("http://p/GraphDriver.Exists", { method: "POST", body: '{"ID":"a"}\n' }));
 */
export function createApp(source: DriverSource, log: Logger = silentLogger, metrics?: Metrics): Hono<CallVars> {
  const app = new Hono<CallVars>();
  // Methods as labels only when they are routes: a caller's made-up paths must not mint new series.
  const routes = new Set<string>();
  const current = metrics ? () => meteredDriver(source.current(), metrics) : () => source.current();
  metrics?.addCollector(driverCollector(() => source.current()));

  // One log line per call; `c.get` carries the layer id the handler saw.
  app.use("*", async (c, next) => {
    const start = performance.now();
    await next();
    const ms = Math.round(performance.now() - start);
    const fields = { method: c.req.path.slice(1), id: c.get("layerId") ?? "", ms, status: c.res.status };
    if (c.res.status >= 400) log.warn("call failed", { ...fields, err: c.get("errMessage") });
    else log.info("call", fields);
    const method = routes.has(c.req.path) ? fields.method : "unknown";
    const outcome = c.res.status < 400 ? "ok" : c.get("errKind") ?? "not-found";
    metrics?.observeCall(FRONTEND, method, outcome, (performance.now() - start) / 1000);
  });

  app.onError((err, c) => {
    const method = c.req.path.slice(1).replace(/^GraphDriver\./, "");
    const id = c.get("layerId");
    const { status, body } = toErrResponse(err, id ? `${method} of layer "${id}" failed` : `${method} failed`);
    c.set("errMessage", body.Err);
    c.set("errKind", err instanceof StrataError ? err.kind : "internal");
    return _json(body, status);
  });
  app.notFound((c) => _json({ Err: `Unknown plugin method ${c.req.method} ${c.req.path}` }, 404));

  const route = (name: string, handler: (c: Context<CallVars>) => Promise<Response>) => {
    routes.add(`/${name}`);
    return app.post(`/${name}`, handler);
  };
  const body = async <S extends Parameters<typeof parseRequest>[1]>(c: Context<CallVars>, method: string, schema: S) => {
    const parsed = parseRequest(method, schema, await readJsonBody(method, c.req.raw)) as { ID?: string };
    if (parsed.ID !== undefined) c.set("layerId", parsed.ID);
    return parsed as ReturnType<typeof parseRequest<S>>;
  };

  route("Plugin.Activate", async () => _json({ Implements: ["GraphDriver"] }));

  route("GraphDriver.Init", async (c) => {
    await source.init(await body(c, "Init", InitRequest));
    return _json({ Err: "" });
  });
  route("GraphDriver.Capabilities", async () => _json({ Capabilities: current().capabilities(), Err: "" }));
  route("GraphDriver.Status", async () => _json({ Status: await current().status(), Err: "" }));
  route("GraphDriver.Cleanup", async () => {
    await current().cleanup();
    return _json({ Err: "" });
  });

  for (const [name, method] of [["GraphDriver.Create", "create"], ["GraphDriver.CreateReadWrite", "createReadWrite"]] as const) {
    route(name, async (c) => {
      const req = await body(c, name.slice(12), CreateRequest);
      await current()[method](req.ID, req.Parent, { mountLabel: req.MountLabel, storageOpt: req.StorageOpt });
      return _json({ Err: "" });
    });
  }
  route("GraphDriver.Remove", async (c) => {
    await current().remove((await body(c, "Remove", IdRequest)).ID);
    return _json({ Err: "" });
  });
  route("GraphDriver.Get", async (c) => {
    const req = await body(c, "Get", GetRequest);
    return _json({ Dir: await current().get(req.ID, req.MountLabel), Err: "" });
  });
  route("GraphDriver.Put", async (c) => {
    await current().put((await body(c, "Put", IdRequest)).ID);
    return _json({ Err: "" });
  });
  route("GraphDriver.Exists", async (c) => _json({ Exists: await current().exists((await body(c, "Exists", IdRequest)).ID) }));
  route("GraphDriver.GetMetadata", async (c) => {
    const req = await body(c, "GetMetadata", IdRequest);
    return _json({ Metadata: await current().getMetadata(req.ID), Err: "" });
  });
  route("GraphDriver.Changes", async (c) => {
    const req = await body(c, "Changes", DiffRequest);
    return _json({ Changes: await current().changes(req.ID, req.Parent), Err: "" });
  });
  route("GraphDriver.DiffSize", async (c) => {
    const req = await body(c, "DiffSize", DiffRequest);
    return _json({ Size: await current().diffSize(req.ID, req.Parent), Err: "" });
  });
  // Errors before the first byte get a JSON status (the daemon needs non-200 for a failed Diff);
  // an error mid-stream aborts the response, which the daemon sees as a truncated tar.
  route("GraphDriver.Diff", async (c) => {
    const req = await body(c, "Diff", DiffRequest);
    const stream = await current().diff(req.ID, req.Parent);
    return new Response(stream, { status: 200, headers: { "content-type": "application/x-tar" } });
  });
  route("GraphDriver.ApplyDiff", async (c) => {
    const query = parseRequest("ApplyDiff", ApplyDiffQuery, { id: c.req.query("id"), parent: c.req.query("parent") ?? "" });
    c.set("layerId", query.id);
    // The daemon names the layer's real parent; one that is not there means the caller is confused.
    if (query.parent !== "" && !(await current().exists(query.parent))) {
      throw new NotFoundError(`Cannot apply a diff to layer "${query.id}" on "${query.parent}": the parent does not exist`);
    }
    // A dropped call is resent with an empty body: applying "nothing" would report success for a layer never written.
    const tar = await _nonEmpty(c.req.raw.body);
    if (!tar) throw new InvalidRequestError(`Invalid ApplyDiff request for layer "${query.id}": empty body`);
    const size = await current().applyDiff(query.id, query.parent, tar);
    return _json({ Size: size, Err: "" });
  });

  return app;
}

/** The body with its first chunk read ahead, or null when it has none (chunked bodies carry no length). */
async function _nonEmpty(body: ReadableStream<Uint8Array> | null): Promise<ReadableStream<Uint8Array> | null> {
  if (!body) return null;
  const reader = body.getReader();
  let first = await reader.read();
  while (!first.done && first.value.byteLength === 0) first = await reader.read();
  if (first.done) return null;
  let head: Uint8Array | undefined = first.value;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (head) {
        controller.enqueue(head);
        head = undefined;
        return;
      }
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
}
