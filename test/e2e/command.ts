/** End-to-end helpers: run a command to completion with a time limit, and fail with everything a reader needs. */
import { spawn } from "node:child_process";

/** What a finished command left behind. */
export interface CommandResult {
  argv: string[];
  /** Exit code; 127 when the program could not be started, -1 when killed by a signal. */
  code: number;
  signal: string | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

/** Options of {@link run}. */
export interface RunOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** SIGKILL the command after this long; default 120 s. */
  timeoutMs?: number;
  input?: string;
}

/**
 * Run `argv` to completion, collecting its output as text.
 *
 * @example
 * ```ts
 * const res = await run(["tar", "-tf", "x.tar"]);
 * if (res.code !== 0) throw new Error(describeResult(res));
 * ```
 */
export function run(argv: string[], opts: RunOptions = {}): Promise<CommandResult> {
  const started = performance.now();
  const timeoutMs = opts.timeoutMs ?? 120_000;
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: opts.cwd,
      env: _cleanEnv(opts.env ?? process.env),
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stdout!.on("data", (b: Buffer) => out.push(b));
    child.stderr!.on("data", (b: Buffer) => err.push(b));
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    const finish = (code: number, signal: string | null, extra = "") => {
      clearTimeout(timer);
      resolve({
        argv,
        code,
        signal,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8") + extra + (timedOut ? `\n(killed after ${timeoutMs} ms)` : ""),
        ms: Math.round(performance.now() - started),
        timedOut,
      });
    };
    child.on("error", (e) => finish(127, null, `cannot run ${argv[0]}: ${e.message}`));
    child.on("close", (code, signal) => finish(code ?? -1, signal));
  });
}

function _cleanEnv(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

/** A command and its outcome, for failure messages. */
export function describeResult(res: CommandResult): string {
  const how = res.timedOut ? "timed out" : res.signal ? `killed by ${res.signal}` : `exit ${res.code}`;
  return [
    `$ ${res.argv.map(_quote).join(" ")}  → ${how} (${res.ms} ms)`,
    `--- stdout ---\n${_clip(res.stdout)}`,
    `--- stderr ---\n${_clip(res.stderr)}`,
  ].join("\n");
}

function _quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

function _clip(text: string, max = 4000): string {
  return text.length <= max ? text : `…${text.slice(-max)}`;
}

/** Extra text for a failure message (log excerpts), computed only when something failed. */
export type FailureContext = () => string;

/** An assertion about what the user saw, carrying the command and the logs. */
export class E2EFailure extends Error {
  override name = "E2EFailure";
}

/** Throw an {@link E2EFailure} unless `ok`; `details` and `context` end up in the message. */
export function check(ok: boolean, message: string, details = "", context?: FailureContext): asserts ok {
  if (ok) return;
  throw new E2EFailure([message, details, context?.() ?? ""].filter(Boolean).join("\n\n"));
}

/** Require exit 0 and return stdout. */
export function succeeded(res: CommandResult, context?: FailureContext): string {
  check(res.code === 0, `Command failed: ${res.argv.join(" ")}`, describeResult(res), context);
  return res.stdout;
}

/** Require exit 0 and that stdout (trimmed) equals `expected`. */
export function printed(res: CommandResult, expected: string, context?: FailureContext): void {
  succeeded(res, context);
  check(
    res.stdout.trim() === expected.trim(),
    `Unexpected output of ${res.argv.join(" ")}: wanted ${JSON.stringify(expected.trim())}`,
    describeResult(res),
    context,
  );
}

/** Require exit 0 and that every one of `needles` occurs in stdout+stderr. */
export function mentions(res: CommandResult, needles: (string | RegExp)[], context?: FailureContext): void {
  succeeded(res, context);
  const text = res.stdout + res.stderr;
  const missing = needles.filter((n) => (typeof n === "string" ? !text.includes(n) : !n.test(text)));
  check(missing.length === 0, `Output of ${res.argv.join(" ")} lacks ${missing.map(String).join(", ")}`, describeResult(res), context);
}

/** Resolve once `probe` returns true; throw `message` (plus context) after `timeoutMs`. */
export async function waitFor(
  probe: () => boolean | Promise<boolean>,
  opts: { timeoutMs: number; intervalMs?: number; message: string; context?: FailureContext },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > deadline) throw new E2EFailure(`${opts.message} (after ${opts.timeoutMs} ms)\n\n${opts.context?.() ?? ""}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 200));
  }
}
