/**
 * The installer's edit of dockerd's `daemon.json`: merge strata's two settings in (keeping every other
 * key and a backup of the original), and take them out again on uninstall. It lives in the binary
 * because a JSON merge in POSIX sh cannot be done right; install.sh runs
 * `strata install-merge-daemon-json` (internal: not in `--help`).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { StrataError } from "./core/errors.ts";

/** The internal CLI command install.sh runs. */
export const DAEMON_JSON_COMMAND = "install-merge-daemon-json";

/** What strata needs in daemon.json: graphdriver plugins only load with experimental on (PROTOCOL.md). */
export const STRATA_SETTINGS: Readonly<Record<string, unknown>> = { experimental: true, "storage-driver": "strata" };

/** The backup of the original daemon.json, beside it. */
export const BACKUP_SUFFIX = ".strata-backup";

/** dockerd's data-root when daemon.json names none. */
export const DEFAULT_DATA_ROOT = "/var/lib/docker";

/** Exit code of the command when switching drivers would hide images and `--force` was not given. */
export const EXIT_REFUSED = 3;

/** A parsed daemon.json: always a JSON object. */
export type DaemonConfig = Record<string, unknown>;

/**
 * `config` with strata's settings set; every other key kept, in its place.
 *
 * @example
 * ```ts
 * mergeDaemonConfig({ "log-driver": "journald" });
 * // { "log-driver": "journald", experimental: true, "storage-driver": "strata" }
 * ```
 */
export function mergeDaemonConfig(config: DaemonConfig): DaemonConfig {
  return { ...config, ...STRATA_SETTINGS };
}

/**
 * `config` with strata's settings taken out: each goes back to its value in `original` (the backup),
 * or away if the original had none. A setting the user changed since the install is left alone.
 *
 * @example
 * ```ts
 * unmergeDaemonConfig({ experimental: true, "storage-driver": "strata" }, { "storage-driver": "overlay2" });
 * // { "storage-driver": "overlay2" }
 * ```
 */
export function unmergeDaemonConfig(config: DaemonConfig, original: DaemonConfig = {}): DaemonConfig {
  const out = { ...config };
  for (const [key, value] of Object.entries(STRATA_SETTINGS)) {
    if (out[key] !== value) continue;
    if (key in original) out[key] = original[key];
    else delete out[key];
  }
  return out;
}

/** Image counts per storage driver under a data-root (`image/<driver>/imagedb/content/sha256/*`). */
export function imagesByDriver(dataRoot: string): Map<string, number> {
  const out = new Map<string, number>();
  let drivers: string[];
  try {
    drivers = fs.readdirSync(path.join(dataRoot, "image"));
  } catch {
    return out;
  }
  for (const driver of drivers) {
    try {
      const n = fs.readdirSync(path.join(dataRoot, "image", driver, "imagedb", "content", "sha256")).length;
      if (n > 0) out.set(driver, n);
    } catch {
      // No image store for this driver.
    }
  }
  return out;
}

/**
 * Why switching `config` to strata would hide existing images, or undefined when it would not. The
 * driver in use is the configured one; with none configured, dockerd picks one that has data, so
 * every driver holding images counts. `root` prefixes the data-root (an install into a directory).
 */
export function switchWarning(config: DaemonConfig, root = "/"): string | undefined {
  const configured = typeof config["storage-driver"] === "string" ? config["storage-driver"] : undefined;
  if (configured !== undefined && _isStrata(configured)) return undefined;
  const dataRoot = typeof config["data-root"] === "string" ? config["data-root"] : DEFAULT_DATA_ROOT;
  const found = [...imagesByDriver(path.join(root, dataRoot))].filter(([d]) => !_isStrata(d) && (configured === undefined || d === configured));
  if (found.length === 0) return undefined;
  const list = found.map(([d, n]) => `${n} image${n === 1 ? "" : "s"} under ${path.join(dataRoot, d)}`).join(", ");
  const from = configured ? `daemon.json sets "storage-driver": "${configured}"` : "daemon.json sets no storage-driver";
  return (
    `${from} and the daemon has ${list}: while strata is the storage driver those images and their ` +
    `containers are invisible (they stay on disk and come back when you switch back). Move them first ` +
    `with docker save and docker load (README: "Moving an existing host"), or pass --force to switch anyway`
  );
}

function _isStrata(driver: string): boolean {
  return driver === "strata" || driver.startsWith("strata:");
}

/** The text written for a config: two-space JSON and a final newline, as people write daemon.json. */
export function formatDaemonConfig(config: DaemonConfig): string {
  return JSON.stringify(config, null, 2) + "\n";
}

/** Parse daemon.json text (empty or blank means `{}`); throws naming the file when it is not a JSON object. */
export function parseDaemonConfig(text: string, file: string): DaemonConfig {
  if (text.trim() === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new StrataError(`Cannot read "${file}": not valid JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new StrataError(`Cannot read "${file}": it is not a JSON object`);
  }
  return parsed as DaemonConfig;
}

/**
 * `strata install-merge-daemon-json [--root DIR] [--check|--dry-run|--uninstall] [--force] FILE`:
 * FILE is the path on the target system (e.g. /etc/docker/daemon.json), under `--root` (default /).
 * Returns the exit code: 0 done, 1 error, 2 usage, {@link EXIT_REFUSED} when images would be hidden.
 */
export function runDaemonJsonCommand(argv: string[]): number {
  let values, positionals;
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        root: { type: "string", default: "/" },
        check: { type: "boolean", default: false },
        "dry-run": { type: "boolean", default: false },
        uninstall: { type: "boolean", default: false },
        force: { type: "boolean", default: false },
      },
    }));
  } catch (err) {
    return _fail(`${DAEMON_JSON_COMMAND}: ${(err as Error).message}`, 2);
  }
  if (positionals.length !== 1) return _fail(`${DAEMON_JSON_COMMAND}: expected one FILE, got ${positionals.length}`, 2);
  const shown = positionals[0]!;
  const file = path.join(values.root, shown);
  const backup = file + BACKUP_SUFFIX;
  try {
    const current = _readIfExists(file);
    const config = parseDaemonConfig(current ?? "", shown);
    if (values.uninstall) return _uninstall(file, backup, shown, config, current, values["dry-run"]);
    const warning = switchWarning(config, values.root);
    if (warning && !values.force) return _fail(`strata: ${warning}`, EXIT_REFUSED);
    if (values.check) return 0;
    if (warning) process.stderr.write(`strata: warning: ${warning.replace(/, or pass --force.*$/, "")}\n`);
    const mergedConfig = mergeDaemonConfig(config);
    const merged = formatDaemonConfig(mergedConfig);
    // A reinstall finds its own merge: nothing to do, and above all no backup of merged text.
    if (current !== undefined && _sameJson(mergedConfig, config)) {
      process.stdout.write(`${shown} already has experimental and storage-driver set\n`);
      return 0;
    }
    if (values["dry-run"]) {
      process.stdout.write(`would write ${shown}:\n${merged}`);
      return 0;
    }
    // The first install's backup is the original; a later merge must not overwrite it.
    if (current !== undefined && !fs.existsSync(backup)) _writeAtomic(backup, current, file);
    _writeAtomic(file, merged, file);
    process.stdout.write(`merged experimental and storage-driver into ${shown}${current !== undefined ? ` (original kept as ${shown}${BACKUP_SUFFIX})` : ""}\n`);
    return 0;
  } catch (err) {
    return _fail(`strata: ${(err as Error).message}`, 1);
  }
}

function _uninstall(file: string, backup: string, shown: string, config: DaemonConfig, current: string | undefined, dryRun: boolean): number {
  if (current === undefined) {
    process.stdout.write(`${shown} does not exist: nothing to undo\n`);
    return 0;
  }
  const originalText = _readIfExists(backup);
  const original = originalText === undefined ? undefined : parseDaemonConfig(originalText, shown + BACKUP_SUFFIX);
  const restored = unmergeDaemonConfig(config, original);
  // Restore the original bytes (formatting and all) when nothing else changed since the install.
  const text = originalText !== undefined && _sameJson(restored, original) ? originalText : formatDaemonConfig(restored);
  // No original and nothing left: the installer created the file, so it goes.
  const remove = originalText === undefined && Object.keys(restored).length === 0;
  if (dryRun) {
    process.stdout.write(remove ? `would remove ${shown}\n` : `would write ${shown}:\n${text}`);
    return 0;
  }
  if (remove) fs.rmSync(file, { force: true });
  else _writeAtomic(file, text, file);
  fs.rmSync(backup, { force: true });
  process.stdout.write(remove ? `removed ${shown}\n` : `restored ${shown}\n`);
  return 0;
}

function _sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(_sorted(a)) === JSON.stringify(_sorted(b));
}

function _sorted(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(_sorted);
  if (typeof v !== "object" || v === null) return v;
  return Object.fromEntries(Object.keys(v).sort().map((k) => [k, _sorted((v as Record<string, unknown>)[k])]));
}

function _readIfExists(file: string): string | undefined {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new StrataError(`Cannot read "${file}": ${(err as Error).message}`, { cause: err });
  }
}

// Temp file and rename: a crash never leaves dockerd a half-written config. Keeps `like`'s mode.
function _writeAtomic(file: string, text: string, like: string): void {
  let mode = 0o644;
  try {
    mode = fs.statSync(like).mode & 0o7777;
  } catch {
    // A new file.
  }
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  const tmp = `${file}.strata-tmp`;
  fs.writeFileSync(tmp, text, { mode });
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, file);
}

function _fail(message: string, code: number): number {
  process.stderr.write(message.endsWith("\n") ? message : message + "\n");
  return code;
}
