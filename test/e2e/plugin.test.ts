/**
 * The end-to-end scenario on strata as a v1 plugin, once per way of running it: the compiled binary,
 * the source on Bun, the source on Deno. One private dockerd per variant, one after the other.
 *
 * STRATA_E2E=1                 run at all (needs root and docker.io 20.10)
 * STRATA_E2E_DRIVER=vfs        strata's --driver (default vfs)
 * STRATA_E2E_VARIANTS=bun,deno only these variants (default: binary,bun,deno)
 * STRATA_E2E_LOG_LEVEL=debug   the plugin's --log-level (default info)
 * STRATA_E2E_PARALLEL=5        containers the parallel step runs at once (default 20; 5 in the VM)
 * STRATA_E2E_KEEP_LOGS=1       keep dockerd.log and plugin.log in /tmp/strata-e2e-*-logs even on success
 */
import { e2eUnavailableReason } from "./harness.ts";
import { runScenario } from "./scenario.ts";
import { STRATA_VARIANTS, variantSkipReason } from "./strata-variants.ts";
import { skipUnlessAsked } from "./gate.ts";

const driver = process.env.STRATA_E2E_DRIVER || "vfs";
const logLevel = process.env.STRATA_E2E_LOG_LEVEL || "info";
const unavailable = skipUnlessAsked(e2eUnavailableReason(), "the plugin end-to-end tests");

for (const v of STRATA_VARIANTS) {
  runScenario({
    name: `plugin (${driver}) via ${v.name}`,
    skip: unavailable ?? variantSkipReason(v),
    storage: { plugin: { command: v.command, driver, logLevel, readyTimeoutMs: v.readyTimeoutMs } },
  });
}
