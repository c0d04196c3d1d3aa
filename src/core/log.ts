/** One-line logs on stderr, filtered by level: `time level msg key=value…` text, or one JSON object a line. */

/** Log levels, most verbose first. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** A log level name. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Line formats: `text` for people, `json` for journald/Loki pipelines. */
export const LOG_FORMATS = ["text", "json"] as const;
/** A log format name. */
export type LogFormat = (typeof LOG_FORMATS)[number];

/** The logger every part of strata receives. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** The keys every line carries before its own fields; a field of the same name is renamed `field.<key>` in JSON. */
const _RESERVED = new Set(["time", "level", "msg"]);

/**
 * A logger writing to stderr: `time level msg key=value…` lines (`text`), or the same fields as one
 * JSON object per line (`json`: `{"time":…,"level":…,"msg":…,"key":value…}`).
 * @example
 * const log = createLogger("info");
 * log.info("call", { method: "Create", id: "abc", ms: 3 });
 * // 2026-01-01T00:00:00.000Z info call method=Create id=abc ms=3
 * createLogger("info", undefined, "json").info("call", { ms: 3 });
 * // {"time":"2026-01-01T00:00:00.000Z","level":"info","msg":"call","ms":3}
 */
export function createLogger(level: LogLevel, write: (line: string) => void = (l) => console.error(l), format: LogFormat = "text"): Logger {
  const min = LOG_LEVELS.indexOf(level);
  const line = format === "json" ? _jsonLine : _textLine;
  const emit = (lvl: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (LOG_LEVELS.indexOf(lvl) < min) return;
    write(line(new Date().toISOString(), lvl, msg, fields ?? {}));
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

/** A logger that drops everything (tests, library users who bring none). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

function _textLine(time: string, level: LogLevel, msg: string, fields: Record<string, unknown>): string {
  const kv = Object.entries(fields).map(([k, v]) => ` ${k}=${_fmt(v)}`).join("");
  return `${time} ${level} ${msg}${kv}`;
}

function _jsonLine(time: string, level: LogLevel, msg: string, fields: Record<string, unknown>): string {
  const out: Record<string, unknown> = { time, level, msg };
  for (const [k, v] of Object.entries(fields)) out[_RESERVED.has(k) ? `field.${k}` : k] = v instanceof Error ? v.message : v;
  // A value JSON cannot hold (a bigint, a cycle) is written as its text, never drops the line.
  try {
    return JSON.stringify(out);
  } catch {
    return JSON.stringify(Object.fromEntries(Object.entries(out).map(([k, v]) => [k, typeof v === "string" ? v : String(v)])));
  }
}

function _fmt(v: unknown): string {
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return /[\s"=]/.test(s ?? "") ? JSON.stringify(s) : String(s);
}
