import { describe, expect, test } from "bun:test";
import { DEFAULTS, SNAPSHOTTER_DEFAULTS, checkRoot, parseCommand, usage } from "../src/cli/args.ts";

const DRIVERS = ["overlay", "vfs"];

describe("parseCommand", () => {
  test("serve with defaults and with every option", () => {
    expect(parseCommand(["serve"], DRIVERS)).toEqual({
      kind: "serve", driver: "auto", socket: DEFAULTS.socket, address: { unix: DEFAULTS.socket }, stateDir: DEFAULTS.stateDir, level: "info",
      logFormat: "text", metrics: null,
    });
    expect(parseCommand(["serve", "--driver", "vfs", "--socket", "tcp://127.0.0.1:7070", "--state-dir", "/s", "--log-level", "debug"], DRIVERS)).toEqual({
      kind: "serve", driver: "vfs", socket: "tcp://127.0.0.1:7070", address: { tcp: { hostname: "127.0.0.1", port: 7070 } }, stateDir: "/s", level: "debug",
      logFormat: "text", metrics: null,
    });
  });

  test("snapshotter with defaults and with every option", () => {
    expect(parseCommand(["snapshotter"], DRIVERS)).toEqual({
      kind: "snapshotter", driver: "auto", socket: SNAPSHOTTER_DEFAULTS.socket, root: SNAPSHOTTER_DEFAULTS.root, size: "", level: "info", logFormat: "text", metrics: null,
    });
    expect(parseCommand(["snapshotter", "--driver", "overlay", "--socket", "/s.sock", "--root", "/r", "--size", "10G", "--log-level", "warn"], DRIVERS)).toEqual({
      kind: "snapshotter", driver: "overlay", socket: "/s.sock", root: "/r", size: "10G", level: "warn", logFormat: "text", metrics: null,
    });
  });

  test("--log-format and --metrics on both front ends", () => {
    for (const command of ["serve", "snapshotter"]) {
      const parsed = parseCommand([command, "--log-format", "json", "--metrics", "unix:/run/strata/metrics.sock"], DRIVERS);
      expect(parsed).toMatchObject({ kind: command, logFormat: "json", metrics: { unix: "/run/strata/metrics.sock" } });
      expect(parseCommand([command, "--metrics", "127.0.0.1:9323"], DRIVERS)).toMatchObject({ metrics: { tcp: { hostname: "127.0.0.1", port: 9323 } } });
      expect(parseCommand([command, "--metrics", "[::1]:0"], DRIVERS)).toMatchObject({ metrics: { tcp: { hostname: "::1", port: 0 } } });
      expect(parseCommand([command, "--log-format", "xml"], DRIVERS)).toEqual({ kind: "bad", message: "--log-format must be one of text, json" });
      for (const address of ["0.0.0.0:9323", "10.0.0.1:9323", "[::]:9323", "example.com:80"]) {
        expect(parseCommand([command, "--metrics", address], DRIVERS)).toEqual({ kind: "bad", message: expect.stringContaining(`Refusing to serve metrics on "${address}"`) });
      }
      expect(parseCommand([command, "--metrics", "unix:relative.sock"], DRIVERS)).toEqual({ kind: "bad", message: expect.stringContaining("absolute path") });
      expect(parseCommand([command, "--metrics", "9323"], DRIVERS)).toEqual({ kind: "bad", message: expect.stringContaining("expected unix:/PATH or HOST:PORT") });
    }
  });

  test("doctor and check", () => {
    expect(parseCommand(["doctor"], DRIVERS)).toEqual({ kind: "doctor", json: false, root: "/var/lib/docker/strata", dockerSocket: "/var/run/docker.sock" });
    expect(parseCommand(["doctor", "--json", "--root", "/srv/s", "--docker-socket", "/d.sock"], DRIVERS)).toEqual({ kind: "doctor", json: true, root: "/srv/s", dockerSocket: "/d.sock" });
    expect(parseCommand(["check", "/var/lib/docker/strata/", "--repair"], DRIVERS)).toEqual({ kind: "check", home: "/var/lib/docker/strata", repair: true, json: false });
    expect(parseCommand(["check"], DRIVERS)).toEqual({ kind: "bad", message: expect.stringContaining("check takes one store") });
    expect(parseCommand(["check", "rel"], DRIVERS)).toEqual({ kind: "bad", message: 'check needs an absolute path (got "rel")' });
  });

  test("bad input names what is wrong", () => {
    const bad = (...argv: string[]) => parseCommand(argv, DRIVERS);
    expect(bad("serve", "--bogus")).toEqual({ kind: "bad", message: expect.stringContaining("Unknown option '--bogus'") });
    expect(bad("serve", "--driver", "zfs")).toEqual({ kind: "bad", message: "--driver must be auto or one of overlay, vfs" });
    expect(bad("serve", "--log-level", "loud")).toEqual({ kind: "bad", message: "--log-level must be one of debug, info, warn, error" });
    expect(bad("serve", "--socket", "tcp://0.0.0.0:1")).toEqual({ kind: "bad", message: expect.stringContaining('Refusing to listen on "tcp://0.0.0.0:1"') });
    expect(bad("snapshotter", "--root", "relative")).toEqual({ kind: "bad", message: '--root must be an absolute path (got "relative")' });
    expect(bad("snapshotter", "--root", "/a:b")).toEqual({ kind: "bad", message: expect.stringContaining('--root must not contain ","') });
    expect(bad("snapshotter", "--socket", "s.sock")).toEqual({ kind: "bad", message: '--socket must be an absolute path (got "s.sock")' });
    expect(bad("frobnicate")).toEqual({ kind: "bad", message: 'unknown command "frobnicate"' });
  });

  test("help, version, status and the installer's command", () => {
    expect(parseCommand([], DRIVERS)).toEqual({ kind: "help", exitCode: 2 });
    expect(parseCommand(["--help"], DRIVERS)).toEqual({ kind: "help", exitCode: 0 });
    expect(parseCommand(["version"], DRIVERS)).toEqual({ kind: "version" });
    expect(parseCommand(["status", "--socket", "/x"], DRIVERS)).toEqual({ kind: "status", socket: "/x" });
    expect(parseCommand(["install-merge-daemon-json", "--check", "f"], DRIVERS)).toEqual({ kind: "daemon-json", argv: ["--check", "f"] });
  });

  test("usage names both front ends and the drivers it was given", () => {
    const text = usage(DRIVERS);
    expect(text).toContain("strata serve [--driver auto|overlay|vfs]");
    expect(text).toContain("strata snapshotter [--driver auto|overlay|vfs]");
  });

  test("checkRoot accepts plain absolute paths", () => {
    expect(checkRoot("/var/lib/strata/snapshotter")).toBeNull();
  });
});
