/**
 * The plugin's own state: which driver serves, on which Home, with which options. The daemon never
 * re-sends Init after a plugin restart, so Init's arguments are persisted in the state dir and the
 * driver is brought back from them at start.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import * as v from "valibot";
import type { DriverSource } from "./app.ts";
import { initDriver, type Driver } from "../core/driver.ts";
import { InvalidRequestError, NotInitializedError, StrataError, hasCode } from "../core/errors.ts";
import { FAULT, faultPoint } from "../core/fault.ts";
import type { Logger } from "../core/log.ts";
import { InitRequest } from "./protocol.ts";
import { syncParent } from "../store/durable.ts";
import type { Sys } from "../sys/types.ts";

/** The file in the state dir holding the last Init. */
export const STATE_FILE = "state.json";
/** Prefix of strata's own `--storage-opt` keys. */
export const OPTION_PREFIX = "strata.";

/** What the plugin needs from its host. */
export interface PluginOptions {
  sys: Sys;
  stateDir: string;
  /** Driver used when Init names none (`--driver`); "auto" picks by priority. */
  defaultDriver: string;
  log: Logger;
}

/** Split Init's `strata.KEY=VALUE` options into the driver choice and the driver's own options. */
export function parseInitOptions(opts: string[]): { driver?: string; options: Record<string, string> } {
  const options: Record<string, string> = {};
  let driver: string | undefined;
  for (const opt of opts) {
    const eq = opt.indexOf("=");
    if (!opt.startsWith(OPTION_PREFIX) || eq < 0) {
      throw new InvalidRequestError(`Unknown storage option "${opt}": strata options have the form strata.KEY=VALUE`);
    }
    const key = opt.slice(OPTION_PREFIX.length, eq);
    const value = opt.slice(eq + 1);
    if (key === "driver") driver = value;
    else options[key] = value;
  }
  return { driver, options };
}

/**
 * The saved Init, checked as the request was: an object with a string Home and lists of options and
 * id maps (a file cut short or edited by hand is refused here, with what is wrong).
 */
export function parseSavedInit(text: string): InitRequest {
  let saved: unknown;
  try {
    saved = JSON.parse(text);
  } catch (err) {
    throw new StrataError(`it is not JSON: ${(err as Error).message}`);
  }
  const parsed = v.safeParse(InitRequest, saved);
  if (!parsed.success) throw new StrataError(`it is not a saved Init: ${parsed.issues[0].message}`);
  return parsed.output;
}

/** The DriverSource of the strata binary: Init-driven, persisted, restored at start. */
export class Plugin implements DriverSource {
  #opts: PluginOptions;
  #driver?: Driver;
  #initKey?: string;
  #queue: Promise<unknown> = Promise.resolve();
  /** Why the saved Init could not be brought back at start; cleared by the next Init. */
  #restoreProblem: string | null = null;

  constructor(opts: PluginOptions) {
    this.#opts = opts;
  }

  /**
   * Bring back the driver of the last Init, if there was one. Returns whether it did. When the
   * saved Init cannot be read or its driver cannot start, this throws, and until a new Init every
   * call is refused with that reason (not "not initialised": the daemon did send Init and will not
   * send it again before its own restart).
   */
  async restore(): Promise<boolean> {
    const file = path.join(this.#opts.stateDir, STATE_FILE);
    try {
      let text: string;
      try {
        text = await fs.readFile(file, "utf8");
      } catch (err) {
        if (hasCode(err, "ENOENT")) return false;
        throw err;
      }
      const saved = parseSavedInit(text);
      await this.#serialised(() => this.#start(saved, false));
      this.#opts.log.info("restored state", { home: saved.Home, driver: this.#driver?.name });
      return true;
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      this.#restoreProblem = `the Init saved in ${JSON.stringify(file)} by an earlier start could not be restored (${why}); ` +
        "restart the daemon so it sends Init again, or fix the cause and restart the plugin";
      throw err;
    }
  }

  /** Handle Init: start the driver (again only if the arguments changed) and persist them. */
  init(req: InitRequest): Promise<void> {
    return this.#serialised(() => this.#start(req, true));
  }

  /** The serving driver. */
  current(): Driver {
    if (this.#driver) return this.#driver;
    if (this.#restoreProblem !== null) throw new NotInitializedError(`Plugin is not initialised: ${this.#restoreProblem}`);
    throw new NotInitializedError("Plugin is not initialised: the daemon has not sent Init yet");
  }

  async #start(req: InitRequest, persist: boolean): Promise<void> {
    const key = JSON.stringify([req.Home, req.Opts, req.UIDMaps, req.GIDMaps]);
    if (key === this.#initKey) return;
    const { driver: chosen, options } = parseInitOptions(req.Opts ?? []);
    const driver = await initDriver(chosen ?? this.#opts.defaultDriver, {
      home: req.Home,
      options,
      uidMaps: req.UIDMaps ?? [],
      gidMaps: req.GIDMaps ?? [],
      sys: this.#opts.sys,
      log: this.#opts.log,
    });
    // A crash from here to the saved state's rename leaves the previous state (or none) in place:
    // the next start serves the Home that was serving before this Init.
    if (persist) {
      faultPoint(FAULT.initBeforeSave);
      await this.#save(req);
    }
    this.#driver = driver;
    this.#initKey = key;
    this.#restoreProblem = null;
  }

  async #save(req: InitRequest): Promise<void> {
    await fs.mkdir(this.#opts.stateDir, { recursive: true, mode: 0o700 });
    const file = path.join(this.#opts.stateDir, STATE_FILE);
    const tmp = `${file}.tmp`;
    const handle = await fs.open(tmp, "w", 0o600);
    try {
      await handle.writeFile(JSON.stringify(req) + "\n");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, file);
    // The rename too must survive a power cut: a restarted plugin is never sent Init again.
    await syncParent(this.#opts.sys, file);
  }

  #serialised<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }
}
