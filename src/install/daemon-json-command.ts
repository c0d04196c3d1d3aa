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
import { DAEMON_JSON_COMMAND } from "../cli/args.ts";
import { StrataError } from "../core/errors.ts";
import {
  BACKUP_SUFFIX, EXIT_REFUSED, type DaemonConfig, formatDaemonConfig, mergeDaemonConfig, parseDaemonConfig, switchWarningFor, unmergeDaemonConfig,
} from "./daemon-config.ts";

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

/** Why switching `config` to strata would hide images under `root` (an install into a directory), or undefined. */
export function switchWarning(config: DaemonConfig, root = "/"): string | undefined {
  return switchWarningFor(config, (dataRoot) => imagesByDriver(path.join(root, dataRoot)));
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
