/**
 * The ways the end-to-end tests run strata: the compiled binary, the source on Bun, the source on Deno.
 * Each test file puts its own subcommand (`serve`, `snapshotter`) after `command`.
 *
 * STRATA_E2E_VARIANTS=bun,deno only these variants (default: binary,bun,deno)
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { PLUGIN_COMMANDS } from "../helpers/plugin-child.ts";
import { REPO_ROOT } from "./harness.ts";

/** One way of starting strata. */
export interface StrataVariant {
  id: string;
  name: string;
  /** The command before strata's subcommand. */
  command: string[];
  /** Files that must exist, and what to do when one does not. */
  needs: [file: string, hint: string][];
  readyTimeoutMs: number;
}

const repo = (p: string) => path.join(REPO_ROOT, p);

/** Every variant, in the order the tests run them. */
export const STRATA_VARIANTS: readonly StrataVariant[] = [
  {
    id: "binary",
    name: "compiled binary dist/strata",
    command: [...PLUGIN_COMMANDS.binary],
    needs: [[repo("dist/strata"), "dist/strata is not built: run ./compile.sh"]],
    readyTimeoutMs: 30_000,
  },
  {
    id: "bun",
    name: "bun src/main.bun.ts",
    command: [...PLUGIN_COMMANDS.bun],
    needs: [[repo("node_modules/.bin/bun"), "node_modules/.bin/bun is missing: run npm ci"]],
    readyTimeoutMs: 30_000,
  },
  {
    id: "deno",
    name: "deno run -A src/main.deno.ts",
    command: [...PLUGIN_COMMANDS.deno],
    needs: [[repo("node_modules/.bin/deno"), "node_modules/.bin/deno is missing: run npm ci"]],
    // The first start type-checks nothing but still loads and compiles the whole module graph.
    readyTimeoutMs: 120_000,
  },
];

/** Why `variant` cannot run here (not selected, a file missing), or undefined when it can. */
export function variantSkipReason(variant: StrataVariant, selected = selectedVariantIds()): string | undefined {
  if (!selected.includes(variant.id)) return `not in STRATA_E2E_VARIANTS=${selected.join(",")}`;
  return variant.needs.find(([file]) => !fs.existsSync(file))?.[1];
}

/** The variant ids STRATA_E2E_VARIANTS selects. */
export function selectedVariantIds(): string[] {
  return (process.env.STRATA_E2E_VARIANTS || "binary,bun,deno").split(",").map((s) => s.trim());
}
