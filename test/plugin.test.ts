import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { register } from "../src/core/driver.ts";
import { ErrNotSupported } from "../src/core/errors.ts";
import { silentLogger } from "../src/core/log.ts";
import { Plugin, STATE_FILE, parseInitOptions } from "../src/graphdriver/plugin.ts";
import { createSys } from "../src/sys/bun.ts";
import { MemoryDriver } from "./helpers/memory-driver.ts";

const inits: Array<{ home: string; options: Record<string, string> }> = [];
register("test-memory", async (config) => {
  inits.push({ home: config.home, options: config.options });
  return new MemoryDriver();
}, -100);
register("test-unsupported", async () => {
  throw new ErrNotSupported("Driver test-unsupported is not supported on this host");
}, -200);

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-plugin-"));
  inits.length = 0;
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const sys = createSys();
const newPlugin = (defaultDriver = "test-memory") => new Plugin({ sys, stateDir: path.join(root, "state"), defaultDriver, log: silentLogger });
const initReq = (Opts: string[] | null = null) => ({ Home: path.join(root, "home"), Opts: Opts ?? [], UIDMaps: [], GIDMaps: [] });

describe("parseInitOptions", () => {
  test("splits strata.driver from driver options", () => {
    expect(parseInitOptions(["strata.driver=vfs", "strata.size=2G"])).toEqual({ driver: "vfs", options: { size: "2G" } });
  });
  test("names an option without the strata. prefix", () => {
    expect(() => parseInitOptions(["size=1G"])).toThrow('Unknown storage option "size=1G": strata options have the form strata.KEY=VALUE');
  });
});

describe("Plugin", () => {
  test("refuses calls before Init with a clear error", () => {
    expect(() => newPlugin().current()).toThrow("Plugin is not initialised: the daemon has not sent Init yet");
  });

  test("persists Init and restores the driver after a restart without a new Init", async () => {
    const first = newPlugin();
    await first.init(initReq(["strata.driver=test-memory", "strata.k=v"]));
    expect(first.current().name).toBe("memory");
    expect(JSON.parse(fs.readFileSync(path.join(root, "state", STATE_FILE), "utf8")).Home).toBe(path.join(root, "home"));

    const second = newPlugin("vfs");
    expect(await second.restore()).toBe(true);
    expect(second.current().name).toBe("memory");
    expect(inits.at(-1)).toEqual({ home: path.join(root, "home"), options: { k: "v" } });
  });

  test("a saved Init that cannot be read is refused on every call with the reason, until a new Init", async () => {
    const file = path.join(root, "state", STATE_FILE);
    const first = newPlugin();
    await first.init(initReq(["strata.driver=test-memory"]));
    for (const [text, why] of [
      ['{"Home": "/x", "Op', "it is not JSON: "],
      ['{"Home": 5, "Opts": []}', "it is not a saved Init: Home must be a string"],
      ["", "it is not JSON: "],
    ] as const) {
      fs.writeFileSync(file, text);
      const plugin = newPlugin();
      await expect(plugin.restore()).rejects.toThrow(why);
      let message = "";
      try {
        plugin.current();
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toStartWith(`Plugin is not initialised: the Init saved in ${JSON.stringify(file)} by an earlier start could not be restored (${why}`);
      expect(message).toEndWith("restart the daemon so it sends Init again, or fix the cause and restart the plugin");
      // The daemon's next Init (after its own restart) serves again and saves a sound state.
      await plugin.init(initReq(["strata.driver=test-memory"]));
      expect(plugin.current().name).toBe("memory");
      expect(await newPlugin().restore()).toBe(true);
    }
  });

  test("does not re-init for a repeated identical Init", async () => {
    const plugin = newPlugin();
    await plugin.init(initReq());
    const driver = plugin.current();
    await plugin.init(initReq());
    expect(plugin.current()).toBe(driver);
    expect(inits.length).toBe(1);
  });

  test("a failed Init keeps no state and names the problem", async () => {
    const plugin = newPlugin();
    await expect(plugin.init(initReq(["strata.driver=test-unsupported"]))).rejects.toThrow("Driver test-unsupported is not supported on this host");
    await expect(plugin.init(initReq(["strata.driver=nope"]))).rejects.toThrow('Unknown driver "nope"');
    expect(fs.existsSync(path.join(root, "state", STATE_FILE))).toBe(false);
    expect(await newPlugin().restore()).toBe(false);
  });
});
