/**
 * A valibot schema per snapshotter request: what the decoded protobuf must hold before the service
 * sees it. A failure is InvalidArgument naming the call and the field.
 */
import * as v from "valibot";
import { InvalidRequestError } from "../core/errors.ts";

/** containerd keys are free text but never empty, never NUL; 4 KiB is far above any real one. */
const Key = (field: string) =>
  v.pipe(
    v.string(`${field} must be a string`),
    v.minLength(1, `${field} must not be empty`),
    v.maxLength(4096, `${field} is longer than 4096 characters`),
    v.check((s) => !s.includes("\0"), `${field} must not contain NUL`),
  );
const OptionalKey = (field: string) =>
  v.pipe(v.string(`${field} must be a string`), v.maxLength(4096, `${field} is longer than 4096 characters`), v.check((s) => !s.includes("\0"), `${field} must not contain NUL`));
const Labels = v.pipe(
  v.record(v.string(), v.string(), "labels must map strings to strings"),
  v.check((l) => Object.keys(l).every((k) => k !== "" && !k.includes("\0")), "labels must not have an empty or NUL key"),
  v.check((l) => JSON.stringify(l).length <= 1 << 20, "labels take more than 1 MiB"),
);

/** Prepare and View. */
export const CreateRequest = v.object({ key: Key("key"), parent: OptionalKey("parent"), labels: Labels });
/** Prepare and View. */
export type CreateRequest = v.InferOutput<typeof CreateRequest>;
/** Mounts, Remove, Stat, Usage. */
export const KeyRequest = v.object({ key: Key("key") });
/** Mounts, Remove, Stat, Usage. */
export type KeyRequest = v.InferOutput<typeof KeyRequest>;
/** Commit. */
export const CommitRequest = v.object({ name: Key("name"), key: Key("key"), labels: Labels });
/** Commit. */
export type CommitRequest = v.InferOutput<typeof CommitRequest>;
/** Update. */
export const UpdateRequest = v.object({
  info: v.object({ name: Key("info.name"), labels: Labels }, "info is required"),
  updateMask: v.optional(v.array(v.string("updateMask entries must be strings")), []),
});
/** Update. */
export type UpdateRequest = v.InferOutput<typeof UpdateRequest>;
/** List. */
export const ListRequest = v.object({ filters: v.array(v.pipe(v.string(), v.maxLength(4096, "a filter is longer than 4096 characters"))) });
/** List. */
export type ListRequest = v.InferOutput<typeof ListRequest>;

/**
 * The request checked against its schema, or InvalidRequestError naming the call and field.
 * @example
 * const req = parseSnapshotRequest("Prepare", CreateRequest, call.request);
 */
export function parseSnapshotRequest<S extends v.GenericSchema>(method: string, schema: S, input: unknown): v.InferOutput<S> {
  const result = v.safeParse(schema, input);
  if (result.success) return result.output;
  const issue = result.issues[0];
  throw new InvalidRequestError(`Invalid ${method} request: ${issue.message}`);
}
