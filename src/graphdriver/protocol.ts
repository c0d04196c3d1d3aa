/**
 * The GraphDriver wire protocol: a valibot schema and a type of the same name per request, and the
 * body reader every route uses. Field names keep Docker's PascalCase.
 */
import * as v from "valibot";
import { InvalidRequestError } from "../core/errors.ts";
import { LAYER_ID_PATTERN } from "../core/layer-id.ts";

/** Largest JSON request body accepted; real ones are a few hundred bytes. */
export const MAX_JSON_BODY = 1 << 20;

/** The media type the daemon asks for in `Accept`. */
export const PLUGIN_MEDIA_TYPE = "application/vnd.docker.plugins.v1.2+json";

/**
 * A layer ID: what dockerd (64 hex, "-init" suffix) and BuildKit (25 alphanumerics) send, and nothing
 * that could act as a path: no "/", no NUL, not "." or "..".
 */
export const LayerId = v.pipe(
  v.string("ID must be a string"),
  v.nonEmpty("ID is empty"),
  v.maxLength(255, "ID is longer than 255 characters"),
  v.regex(LAYER_ID_PATTERN, "ID may only contain letters, digits, '_', '.' and '-', and must not start with '.', '_' or '-'"),
);
/** A layer ID. */
export type LayerId = v.InferOutput<typeof LayerId>;

/** A parent ID: absent or empty for a base layer. */
export const ParentId = v.optional(v.union([v.literal(""), LayerId], "Parent must be a layer ID"), "");

/** One UID/GID map entry as dockerd serialises `idtools.IDMap`. */
export const IdMapEntry = v.object({
  container_id: v.pipe(v.number(), v.integer(), v.minValue(0)),
  host_id: v.pipe(v.number(), v.integer(), v.minValue(0)),
  size: v.pipe(v.number(), v.integer(), v.minValue(1)),
});

/** `/GraphDriver.Init`. */
export const InitRequest = v.object({
  Home: v.pipe(v.string("Home must be a string"), v.startsWith("/", "Home must be an absolute path")),
  Opts: v.nullish(v.array(v.string()), []),
  UIDMaps: v.nullish(v.array(IdMapEntry), []),
  GIDMaps: v.nullish(v.array(IdMapEntry), []),
});
/** `/GraphDriver.Init`. */
export type InitRequest = v.InferOutput<typeof InitRequest>;

/** `/GraphDriver.Create` and `/GraphDriver.CreateReadWrite`. */
export const CreateRequest = v.object({
  ID: LayerId,
  Parent: ParentId,
  MountLabel: v.optional(v.string(), ""),
  StorageOpt: v.nullish(v.record(v.string(), v.string()), {}),
});
/** `/GraphDriver.Create` and `/GraphDriver.CreateReadWrite`. */
export type CreateRequest = v.InferOutput<typeof CreateRequest>;

/** `/GraphDriver.{Remove,Put,Exists,GetMetadata}`. */
export const IdRequest = v.object({ ID: LayerId });
/** `/GraphDriver.{Remove,Put,Exists,GetMetadata}`. */
export type IdRequest = v.InferOutput<typeof IdRequest>;

/** `/GraphDriver.Get`. */
export const GetRequest = v.object({ ID: LayerId, MountLabel: v.optional(v.string(), "") });
/** `/GraphDriver.Get`. */
export type GetRequest = v.InferOutput<typeof GetRequest>;

/** `/GraphDriver.{Diff,Changes,DiffSize}`. */
export const DiffRequest = v.object({ ID: LayerId, Parent: ParentId });
/** `/GraphDriver.{Diff,Changes,DiffSize}`. */
export type DiffRequest = v.InferOutput<typeof DiffRequest>;

/** `/GraphDriver.ApplyDiff?id=&parent=` query. */
export const ApplyDiffQuery = v.object({ id: LayerId, parent: ParentId });
/** `/GraphDriver.ApplyDiff?id=&parent=` query. */
export type ApplyDiffQuery = v.InferOutput<typeof ApplyDiffQuery>;

/** Validate `value` against `schema`, or throw InvalidRequestError naming the first problem. */
export function parseRequest<S extends v.GenericSchema>(method: string, schema: S, value: unknown): v.InferOutput<S> {
  const result = v.safeParse(schema, value);
  if (result.success) return result.output;
  const issue = result.issues[0];
  const where = v.getDotPath(issue);
  throw new InvalidRequestError(`Invalid ${method} request: ${where ? `${where}: ` : ""}${issue.message}`);
}

/**
 * Read a JSON request body. The daemon sends no Content-Type and resends a dropped call with an
 * empty body, so the text is parsed whatever the headers say and an empty body is an error, never `{}`.
 */
export async function readJsonBody(method: string, req: Request): Promise<unknown> {
  const declared = Number(req.headers.get("content-length") ?? "NaN");
  if (declared > MAX_JSON_BODY) throw new InvalidRequestError(`Invalid ${method} request: body larger than ${MAX_JSON_BODY} bytes`);
  // A declared length within the cap (what the daemon sends) is read whole in one step; a chunked
  // body is read chunk by chunk so the cap stops it early.
  const text = Number.isFinite(declared) ? await req.text() : await _readCapped(method, req);
  if (text.trim() === "") throw new InvalidRequestError(`Invalid ${method} request: empty body`);
  try {
    return JSON.parse(text);
  } catch {
    throw new InvalidRequestError(`Invalid ${method} request: body is not JSON`);
  }
}

async function _readCapped(method: string, req: Request): Promise<string> {
  if (!req.body) return "";
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of req.body) {
    total += chunk.byteLength;
    // Chunked bodies carry no length up front: stop reading as soon as the cap is passed.
    if (total > MAX_JSON_BODY) throw new InvalidRequestError(`Invalid ${method} request: body larger than ${MAX_JSON_BODY} bytes`);
    chunks.push(chunk);
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.byteLength;
  }
  return new TextDecoder().decode(all);
}
