/**
 * daemon.json as data: strata's two settings merged in and taken out again, parsing and formatting,
 * and the warning when a switch would hide images. No file is touched here (`daemon-json-command.ts`
 * does the reading and writing).
 */
import * as path from "node:path";
import { StrataError } from "../core/errors.ts";

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

/**
 * Why switching `config` to strata would hide existing images, or undefined when it would not. The
 * driver in use is the configured one; with none configured, dockerd picks one that has data, so
 * every driver holding images counts. `images` counts a data-root's images per driver.
 */
export function switchWarningFor(config: DaemonConfig, images: (dataRoot: string) => Map<string, number>): string | undefined {
  const configured = typeof config["storage-driver"] === "string" ? config["storage-driver"] : undefined;
  if (configured !== undefined && _isStrata(configured)) return undefined;
  const dataRoot = typeof config["data-root"] === "string" ? config["data-root"] : DEFAULT_DATA_ROOT;
  const found = [...images(dataRoot)].filter(([d]) => !_isStrata(d) && (configured === undefined || d === configured));
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
