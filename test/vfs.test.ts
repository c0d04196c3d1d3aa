import { initVfs } from "../drivers/vfs/driver.ts";
import { silentLogger } from "../src/core/log.ts";
import { createSys } from "../src/sys/bun.ts";
import { runDriverSuite } from "./driver-suite.ts";

const sys = createSys();
runDriverSuite({
  name: "vfs",
  sys,
  newDriver: (home) => initVfs({ home, options: {}, uidMaps: [], gidMaps: [], sys, log: silentLogger }),
});
