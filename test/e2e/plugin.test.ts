/**
 * The end-to-end scenario on strata as a v1 plugin, once per way of running it: the compiled binary,
 * the source on Bun, the source on Deno. One private dockerd per variant, one after the other.
 *
 * STRATA_E2E=1                 run at all (needs root and docker.io 20.10)
 * STRATA_E2E_DRIVER=vfs        strata's --driver (default vfs)
 * STRATA_E2E_VARIANTS=bun,deno only these variants (default: binary,bun,deno)
 * STRATA_E2E_LOG_LEVEL=debug   the plugin's --log-level (default info)
 * STRATA_E2E_KEEP_LOGS=1       keep dockerd.log and plugin.log in /tmp/strata-e2e-*-logs even on success
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { e2eUnavailableReason, REPO_ROOT } from "./harness.ts";
import { runScenario } from "./scenario.ts";

const driver = process.env.STRATA_E2E_DRIVER || "vfs";
const logLevel = process.env.STRATA_E2E_LOG_LEVEL || "info";
const selected = (process.env.STRATA_E2E_VARIANTS || "binary,bun,deno").split(",").map((s) => s.trim());
const unavailable = e2eUnavailableReason();
const repo = (p: string) => path.join(REPO_ROOT, p);

interface Variant {
  id: string;
  name: string;
  command: string[];
  /** Files that must exist, and what to do when one does not. */
  needs: [file: string, hint: string][];
  readyTimeoutMs: number;
}

const variants: Variant[] = [
  {
    id: "binary",
    name: "compiled binary dist/strata",
    command: [repo("dist/strata")],
    needs: [[repo("dist/strata"), "dist/strata is not built: run ./compile.sh"]],
    readyTimeoutMs: 30_000,
  },
  {
    id: "bun",
    name: "bun src/main.bun.ts",
    command: [repo("node_modules/.bin/bun"), "src/main.bun.ts"],
    needs: [[repo("node_modules/.bin/bun"), "node_modules/.bin/bun is missing: run npm ci"]],
    readyTimeoutMs: 30_000,
  },
  {
    id: "deno",
    name: "deno run -A src/main.deno.ts",
    command: [repo("node_modules/.bin/deno"), "run", "-A", "src/main.deno.ts"],
    needs: [[repo("node_modules/.bin/deno"), "node_modules/.bin/deno is missing: run npm ci"]],
    // The first start type-checks nothing but still loads and compiles the whole module graph.
    readyTimeoutMs: 120_000,
  },
];

for (const v of variants) {
  const skip =
    unavailable ??
    (selected.includes(v.id) ? undefined : `not in STRATA_E2E_VARIANTS=${selected.join(",")}`) ??
    v.needs.find(([file]) => !fs.existsSync(file))?.[1];
  runScenario({
    name: `plugin (${driver}) via ${v.name}`,
    skip,
    storage: { plugin: { command: v.command, driver, logLevel, readyTimeoutMs: v.readyTimeoutMs } },
  });
}
