import { describe, expect, test } from "bun:test";
import { createApp, fixedSource } from "../src/graphdriver/app.ts";
import { MemoryDriver } from "./helpers/memory-driver.ts";

/** A request as dockerd 20.10 sends it: POST, no Content-Type, JSON with a trailing newline. */
function dockerCall(method: string, body?: unknown, query = ""): Request {
  return new Request(`http://plugin/${method}${query}`, {
    method: "POST",
    headers: { accept: "application/vnd.docker.plugins.v1.2+json", "user-agent": "Go-http-client/1.1" },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body) + "\n",
  });
}

function setup() {
  const driver = new MemoryDriver();
  const app = createApp(fixedSource(driver));
  const call = async (method: string, body?: unknown, query = "") => {
    const res = await app.fetch(dockerCall(method, body, query));
    return { status: res.status, type: res.headers.get("content-type"), json: (await res.json()) as Record<string, unknown> };
  };
  return { driver, app, call };
}

describe("protocol app", () => {
  test("answers Activate with the GraphDriver interface", async () => {
    const { call } = setup();
    expect(await call("Plugin.Activate")).toMatchObject({ status: 200, json: { Implements: ["GraphDriver"] } });
  });

  test("creates a layer from a body with no Content-Type and omitted fields", async () => {
    const { call, driver } = setup();
    const res = await call("GraphDriver.Create", { ID: "base" });
    expect(res).toEqual({ status: 200, type: "application/vnd.docker.plugins.v1.2+json", json: { Err: "" } });
    expect(driver.calls).toEqual(["create base "]);
  });

  test("passes StorageOpt and MountLabel of CreateReadWrite to the driver", async () => {
    const { call, driver } = setup();
    await call("GraphDriver.Create", { ID: "base" });
    expect((await call("GraphDriver.CreateReadWrite", { ID: "c-init", Parent: "base", StorageOpt: { size: "10G" } })).status).toBe(200);
    expect(driver.layers.get("c-init")?.opts).toEqual({ mountLabel: "", storageOpt: { size: "10G" } });
  });

  test("rejects an empty body instead of reading it as {}", async () => {
    const { call, driver } = setup();
    await call("GraphDriver.Create", { ID: "keep" });
    const res = await call("GraphDriver.Remove", "");
    expect(res.status).toBe(400);
    expect(res.json.Err).toBe("Invalid Remove request: empty body");
    expect(driver.layers.has("keep")).toBe(true);
  });

  test("rejects malformed JSON, wrong types and unsafe IDs with a named field", async () => {
    const { call } = setup();
    expect((await call("GraphDriver.Get", "{not json")).json.Err).toBe("Invalid Get request: body is not JSON");
    expect((await call("GraphDriver.Get", { ID: 5 })).json.Err).toBe("Invalid Get request: ID: ID must be a string");
    for (const ID of ["", "../etc", "a/b", "a\u0000b", ".hidden", "x".repeat(256)]) {
      const res = await call("GraphDriver.Remove", { ID });
      expect(res.status).toBe(400);
      expect(String(res.json.Err)).toStartWith("Invalid Remove request: ID: ");
    }
  });

  test("rejects a JSON body over the size cap", async () => {
    const { call } = setup();
    const res = await call("GraphDriver.Exists", JSON.stringify({ ID: "a", pad: "x".repeat(2 << 20) }));
    expect(res.status).toBe(400);
    expect(res.json.Err).toContain("body larger than");
  });

  test("answers an unknown method with a JSON 404", async () => {
    const { call } = setup();
    expect(await call("GraphDriver.Frobnicate", {})).toMatchObject({ status: 404, json: { Err: "Unknown plugin method POST /GraphDriver.Frobnicate" } });
  });

  test("translates driver errors to {Err} with their status", async () => {
    const { call } = setup();
    const res = await call("GraphDriver.Get", { ID: "missing" });
    expect(res).toMatchObject({ status: 404, json: { Err: 'Layer "missing" does not exist' } });
    await call("GraphDriver.Create", { ID: "dup" });
    expect((await call("GraphDriver.Create", { ID: "dup" })).status).toBe(409);
  });

  test("streams ApplyDiff bodies and Diff responses", async () => {
    const { app, call } = setup();
    await call("GraphDriver.Create", { ID: "l1" });
    const body = new Uint8Array(3 * 1024 * 1024);
    const applied = await app.fetch(new Request("http://plugin/GraphDriver.ApplyDiff?id=l1&parent=", { method: "POST", body }));
    expect(await applied.json()).toEqual({ Size: body.byteLength, Err: "" });
    const diff = await app.fetch(dockerCall("GraphDriver.Diff", { ID: "l1", Parent: "" }));
    expect(diff.status).toBe(200);
    expect(diff.headers.get("content-type")).toBe("application/x-tar");
    expect((await diff.arrayBuffer()).byteLength).toBe(body.byteLength);
  });

  test("refuses an ApplyDiff with an empty body or a bad id", async () => {
    const { call } = setup();
    await call("GraphDriver.Create", { ID: "l1" });
    expect((await call("GraphDriver.ApplyDiff", "", "?id=l1&parent=")).json.Err).toBe('Invalid ApplyDiff request for layer "l1": empty body');
    expect((await call("GraphDriver.ApplyDiff", "x", "?id=../x")).status).toBe(400);
  });

  test("refuses an ApplyDiff whose parent does not exist (or is not an ID) before reading the layer", async () => {
    const { call, driver } = setup();
    await call("GraphDriver.Create", { ID: "l1" });
    const missing = await call("GraphDriver.ApplyDiff", "some layer bytes", "?id=l1&parent=gone");
    expect(missing).toMatchObject({ status: 404, json: { Err: 'Cannot apply a diff to layer "l1" on "gone": the parent does not exist' } });
    expect((await call("GraphDriver.ApplyDiff", "x", "?id=l1&parent=../etc")).status).toBe(400);
    expect(driver.layers.get("l1")?.bytes).toBe(0);
  });

  test("answers Status, Capabilities (nested), GetMetadata, Changes, DiffSize, Exists, Cleanup", async () => {
    const { call, driver } = setup();
    await call("GraphDriver.Create", { ID: "l1" });
    expect((await call("GraphDriver.Status", {})).json).toEqual({ Status: [["Layers", "1"]], Err: "" });
    expect((await call("GraphDriver.Capabilities", {})).json).toEqual({ Capabilities: { ReproducesExactDiffs: false }, Err: "" });
    expect((await call("GraphDriver.GetMetadata", { ID: "l1" })).json).toEqual({ Metadata: { Dir: "/memory/l1" }, Err: "" });
    expect((await call("GraphDriver.Changes", { ID: "l1", Parent: "" })).json).toEqual({ Changes: [{ Path: "/added", Kind: 1 }], Err: "" });
    expect((await call("GraphDriver.DiffSize", { ID: "l1" })).json).toEqual({ Size: 0, Err: "" });
    expect((await call("GraphDriver.Exists", { ID: "l1" })).json).toEqual({ Exists: true });
    expect((await call("GraphDriver.Exists", { ID: "nope" })).json).toEqual({ Exists: false });
    expect((await call("GraphDriver.Cleanup", {})).json).toEqual({ Err: "" });
    expect(driver.calls).toContain("cleanup");
  });
});
