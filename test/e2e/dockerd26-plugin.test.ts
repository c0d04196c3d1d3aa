/**
 * The GraphDriver end-to-end scenario on dockerd 26.1 (Debian 13, the newest engine that loads
 * graphdriver plugins under --experimental without a deprecation switch): the same steps as on
 * dockerd 20.10 (scenario.ts), dockerd, its containerd 1.7 and the docker CLI run from the chroot of
 * `scripts/trixie-chroot.sh` in a private mount namespace, strata (the compiled binary) on the host.
 * dockerd 26 sends `Host: plugin.moby.localhost`, and its `docker export` takes a Get with no Put
 * (moby #48516): the scenario's later steps still find every layer removed on request. Then the same
 * on `dist/plugin` as a managed plugin of that dockerd (the plugin's sockets in the namespace's
 * /run/docker/plugins, bound to the temp root so the harness reaches them).
 *
 * STRATA_E2E=1                 run at all (root, the chroot, dist/strata); a host that cannot run it fails
 * STRATA_TRIXIE_ROOT=DIR       the chroot (default /var/cache/strata/trixie)
 * STRATA_E2E_DRIVER=overlay    strata's --driver (default overlay)
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { VERSION } from "../../src/core/version.ts";
import { dockerd26MissingReason, dockerd26SkipReason, TRIXIE_ROOT } from "./dockerd26.ts";
import { skipUnlessAsked } from "./gate.ts";
import { runScenario } from "./scenario.ts";
import { REPO_ROOT } from "./harness.ts";
import { STRATA_VARIANTS, variantSkipReason } from "./strata-variants.ts";

const binary = STRATA_VARIANTS.find((v) => v.id === "binary")!;
const driver = process.env.STRATA_E2E_DRIVER || "overlay";
const logLevel = process.env.STRATA_E2E_LOG_LEVEL || "info";
const unavailable = dockerd26SkipReason() ?? dockerd26MissingReason();
const pluginDir = path.join(REPO_ROOT, "dist", "plugin");
const pluginName = `strata:${VERSION}`;

runScenario({
  name: `plugin (${driver}) on dockerd 26.1 via ${binary.name}`,
  skip: skipUnlessAsked(unavailable ?? variantSkipReason(binary, [binary.id]), "the dockerd 26 plugin end-to-end tests"),
  storage: { plugin: { command: binary.command, driver, logLevel, readyTimeoutMs: binary.readyTimeoutMs } },
  daemon: { chroot: TRIXIE_ROOT },
});

runScenario({
  name: `managed plugin ${pluginName} (${driver}) on dockerd 26.1 from dist/plugin`,
  skip: skipUnlessAsked(
    unavailable ?? (fs.existsSync(path.join(pluginDir, "rootfs", "strata")) ? undefined : "dist/plugin is not built: run ./compile.sh"),
    "the dockerd 26 managed plugin end-to-end tests",
  ),
  storage: { managed: { dir: pluginDir, name: pluginName, driver } },
  daemon: { chroot: TRIXIE_ROOT },
});
