import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EXIT_REFUSED, mergeDaemonConfig, parseDaemonConfig, switchWarningFor, unmergeDaemonConfig } from "../src/install/daemon-config.ts";
import { runDaemonJsonCommand, switchWarning } from "../src/install/daemon-json-command.ts";

const roots: string[] = [];
afterEach(() => roots.splice(0).forEach((r) => fs.rmSync(r, { recursive: true, force: true })));

function root(files: Record<string, string> = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "strata-daemon-json-"));
  roots.push(dir);
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  }
  return dir;
}

const image = (driver: string, dataRoot = "var/lib/docker") => ({ [`${dataRoot}/image/${driver}/imagedb/content/sha256/${"a".repeat(64)}`]: "{}" });

describe("mergeDaemonConfig", () => {
  test("sets experimental and storage-driver, keeping every other key in its place", () => {
    const merged = mergeDaemonConfig({ "log-driver": "journald", "storage-driver": "overlay2", "default-ulimits": { nofile: { Soft: 1 } } });
    expect(Object.entries(merged)).toEqual([
      ["log-driver", "journald"],
      ["storage-driver", "strata"],
      ["default-ulimits", { nofile: { Soft: 1 } }],
      ["experimental", true],
    ]);
  });
});

describe("unmergeDaemonConfig", () => {
  test("puts back the original values and drops the keys the original did not have", () => {
    expect(unmergeDaemonConfig({ a: 1, experimental: true, "storage-driver": "strata" }, { "storage-driver": "overlay2" })).toEqual({ a: 1, "storage-driver": "overlay2" });
  });
  test("leaves a setting the user changed after the install alone", () => {
    expect(unmergeDaemonConfig({ experimental: true, "storage-driver": "zfs" }, {})).toEqual({ "storage-driver": "zfs" });
  });
});

describe("switchWarningFor", () => {
  test("is pure: the image counts come from the caller", () => {
    const counts = (dataRoot: string) => new Map(dataRoot === "/var/lib/docker" ? [["overlay2", 3]] : []);
    expect(switchWarningFor({}, counts)).toStartWith("daemon.json sets no storage-driver and the daemon has 3 images under /var/lib/docker/overlay2");
    expect(switchWarningFor({ "data-root": "/srv" }, counts)).toBeUndefined();
    expect(switchWarningFor({ "storage-driver": "strata:0.1.0" }, counts)).toBeUndefined();
  });
});

describe("switchWarning", () => {
  test("says nothing when strata is already the driver, or when there are no images", () => {
    expect(switchWarning({ "storage-driver": "strata" }, root(image("strata")))).toBeUndefined();
    expect(switchWarning({ "storage-driver": "overlay2" }, root())).toBeUndefined();
  });
  test("names the configured driver and how many images it would hide", () => {
    const msg = switchWarning({ "storage-driver": "overlay2" }, root({ ...image("overlay2"), ...image("vfs") }));
    expect(msg).toStartWith('daemon.json sets "storage-driver": "overlay2" and the daemon has 1 image under /var/lib/docker/overlay2: ');
    expect(msg).toContain("invisible");
  });
  test("ignores images of a driver that is not the configured one (they are hidden already)", () => {
    expect(switchWarning({ "storage-driver": "overlay2" }, root(image("vfs")))).toBeUndefined();
  });
  test("with no driver configured, counts every driver holding images", () => {
    expect(switchWarning({}, root(image("overlay2")))).toStartWith("daemon.json sets no storage-driver and the daemon has 1 image under /var/lib/docker/overlay2");
  });
  test("looks under the data-root daemon.json names", () => {
    expect(switchWarning({ "data-root": "/srv/docker" }, root(image("btrfs", "srv/docker")))).toContain("under /srv/docker/btrfs");
  });
});

describe("parseDaemonConfig", () => {
  test("reads an empty file as {} and rejects what is not a JSON object, naming the file", () => {
    expect(parseDaemonConfig(" \n", "/etc/docker/daemon.json")).toEqual({});
    expect(() => parseDaemonConfig("{,}", "/etc/docker/daemon.json")).toThrow('Cannot read "/etc/docker/daemon.json": not valid JSON');
    expect(() => parseDaemonConfig("[1]", "/etc/docker/daemon.json")).toThrow('Cannot read "/etc/docker/daemon.json": it is not a JSON object');
  });
});

describe("strata install-merge-daemon-json", () => {
  test("leaves a file it cannot parse untouched and exits 1", () => {
    const dir = root({ "etc/docker/daemon.json": "{ broken" });
    expect(runDaemonJsonCommand(["--root", dir, "/etc/docker/daemon.json"])).toBe(1);
    expect(fs.readFileSync(path.join(dir, "etc/docker/daemon.json"), "utf8")).toBe("{ broken");
    expect(fs.existsSync(path.join(dir, "etc/docker/daemon.json.strata-backup"))).toBe(false);
  });
  test("--check refuses with exit 3 when images would be hidden, and passes with --force", () => {
    const dir = root({ "etc/docker/daemon.json": '{"storage-driver":"overlay2"}', ...image("overlay2") });
    expect(runDaemonJsonCommand(["--root", dir, "--check", "/etc/docker/daemon.json"])).toBe(EXIT_REFUSED);
    expect(runDaemonJsonCommand(["--root", dir, "--check", "--force", "/etc/docker/daemon.json"])).toBe(0);
    expect(fs.readFileSync(path.join(dir, "etc/docker/daemon.json"), "utf8")).toBe('{"storage-driver":"overlay2"}');
  });
  test("keeps the file's mode", () => {
    const dir = root({ "etc/docker/daemon.json": "{}\n" });
    fs.chmodSync(path.join(dir, "etc/docker/daemon.json"), 0o600);
    expect(runDaemonJsonCommand(["--root", dir, "/etc/docker/daemon.json"])).toBe(0);
    expect(fs.statSync(path.join(dir, "etc/docker/daemon.json")).mode & 0o777).toBe(0o600);
  });
});
