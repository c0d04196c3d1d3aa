/** The ways a test can run strata's CLI: the Bun source, the compiled binary, the Deno source. */
import * as fs from "node:fs";
import * as path from "node:path";

/** One way to run `strata`: the argv before its own arguments, and why it is skipped (if it is). */
export interface StrataCommand {
  name: string;
  runtime: "bun" | "deno";
  argv: string[];
  skip?: string;
}

const BUN = path.resolve("node_modules/.bin/bun");
const DENO = path.resolve("node_modules/.bin/deno");
const BINARY = path.resolve("dist/strata");

/** Every runnable form of strata, each with a stated reason when it cannot run here. */
export const STRATA_COMMANDS: StrataCommand[] = [
  { name: "bun source", runtime: "bun", argv: [BUN, "src/main.bun.ts"] },
  { name: "compiled binary", runtime: "bun", argv: [BINARY], skip: fs.existsSync(BINARY) ? undefined : "dist/strata is not built (./compile.sh)" },
  { name: "deno source", runtime: "deno", argv: [DENO, "run", "-A", "src/main.deno.ts"], skip: fs.existsSync(DENO) ? undefined : "node_modules/.bin/deno is missing (npm install)" },
];
