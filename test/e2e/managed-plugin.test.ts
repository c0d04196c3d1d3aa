/**
 * The end-to-end scenario on strata as a managed (v2) plugin: a private dockerd on a built-in driver
 * runs `docker plugin create strata:VERSION dist/plugin` and `docker plugin enable`, stops, and starts
 * again with `--storage-driver strata:VERSION` (and `--storage-opt strata.driver=DRIVER`).
 *
 * STRATA_E2E=1             run at all (needs root and docker.io 20.10)
 * STRATA_E2E_DRIVER=vfs    strata's driver (default vfs)
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { VERSION } from "../../src/core/version.ts";
import { e2eUnavailableReason, REPO_ROOT } from "./harness.ts";
import { runScenario } from "./scenario.ts";
import { skipUnlessAsked } from "./gate.ts";

const driver = process.env.STRATA_E2E_DRIVER || "vfs";
const dir = path.join(REPO_ROOT, "dist", "plugin");
const name = `strata:${VERSION}`;

runScenario({
  name: `managed plugin ${name} (${driver}) from dist/plugin`,
  skip: skipUnlessAsked(
    e2eUnavailableReason() ??
      (fs.existsSync(path.join(dir, "config.json")) && fs.existsSync(path.join(dir, "rootfs", "strata"))
        ? undefined
        : "dist/plugin is not built: run ./compile.sh"),
    "the managed plugin tests",
  ),
  storage: { managed: { dir, name, driver } },
});
