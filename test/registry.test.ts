import { afterAll, describe, expect, test } from "bun:test";
import { initDriver, register, registeredDrivers, unregister } from "../src/core/driver.ts";
import { ErrIncompatibleFS, ErrPrerequisites, StrataError } from "../src/core/errors.ts";
import { silentLogger } from "../src/core/log.ts";
import type { Sys } from "../src/sys/types.ts";
import { MemoryDriver } from "./helpers/memory-driver.ts";

const config = { home: "/nonexistent", options: {}, uidMaps: [], gidMaps: [], sys: {} as Sys, log: silentLogger };

describe("driver registry", () => {
  afterAll(() => ["reg-high", "reg-mid", "reg-low", "reg-broken"].forEach(unregister));

  test("auto skips drivers that cannot run here and takes the next by priority", async () => {
    register("reg-high", async () => { throw new ErrIncompatibleFS("Backing filesystem is not supported"); }, 1000);
    register("reg-mid", async () => { throw new ErrPrerequisites("Kernel module missing"); }, 999);
    register("reg-low", async () => Object.assign(new MemoryDriver(), { name: "reg-low" }), 998);
    expect(registeredDrivers().slice(0, 3)).toEqual(["reg-high", "reg-mid", "reg-low"]);
    expect((await initDriver("auto", config)).name).toBe("reg-low");
  });

  test("auto stops at a real error instead of hiding it", async () => {
    register("reg-broken", async () => { throw new StrataError("Home is not writable"); }, 2000);
    await expect(initDriver("auto", config)).rejects.toThrow("Home is not writable");
  });

  test("a named driver that is unknown is ErrNotSupported naming the known ones", async () => {
    await expect(initDriver("zfs", config)).rejects.toThrow('Unknown driver "zfs" (known: ');
  });
});
