/** One-line logs on stderr, filtered by level. */

/** Log levels, most verbose first. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** A log level name. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The logger every part of strata receives. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * A logger writing `time level msg key=value…` lines to stderr.
 * @example
 * const log = createLogger("info");
 * log.info("call", { method: "Create", id: "abc", ms: 3 });
 */
export function createLogger(level: LogLevel, write: (line: string) => void = (l) => console.error(l)): Logger {
  const min = LOG_LEVELS.indexOf(level);
  const emit = (lvl: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (LOG_LEVELS.indexOf(lvl) < min) return;
    const kv = fields ? Object.entries(fields).map(([k, v]) => ` ${k}=${_fmt(v)}`).join("") : "";
    write(`${new Date().toISOString()} ${lvl} ${msg}${kv}`);
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

/** A logger that drops everything (tests, library users who bring none). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

function _fmt(v: unknown): string {
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return /[\s"=]/.test(s ?? "") ? JSON.stringify(s) : String(s);
}
