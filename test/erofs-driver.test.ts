/** The erofs driver: the conformance suite, and what only it does (images, exact diffs, shared image mounts). */
import { initErofs } from "../drivers/erofs/driver.ts";
import { silentLogger } from "../src/core/log.ts";
import { createSys } from "../src/sys/bun.ts";
import { runDriverSuite } from "./driver-suite.ts";
import { TEST_DRIVERS } from "./helpers/drivers.ts";

const sys = createSys();
const skip = TEST_DRIVERS.find((d) => d.name === "erofs")!.skip ?? undefined;

runDriverSuite({
  name: "erofs",
  sys,
  newDriver: (home) => initErofs({ home, options: {}, uidMaps: [], gidMaps: [], sys, log: silentLogger }),
  skip,
});
