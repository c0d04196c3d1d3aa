/** Test helpers: whether this host can mount overlay, so overlay tests can say why they skip. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Sys } from "../../src/sys/types.ts";
import { detectHost } from "../../drivers/overlay/host.ts";
import { unmountBelow } from "./mounts.ts";

/** Why overlay cannot be mounted on the temp dir's filesystem here, or null when it can. */
export function overlayUnavailable(sys: Sys): string | null {
  if (process.getuid?.() !== 0) return "mounting overlay needs root";
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "strata-overlay-probe-"));
  try {
    for (const d of ["l", "u", "w", "m"]) fs.mkdirSync(path.join(dir, d));
    sys.mount("overlay", path.join(dir, "m"), "overlay", 0, `lowerdir=${dir}/l,upperdir=${dir}/u,workdir=${dir}/w`);
    sys.umount2(path.join(dir, "m"), 0);
    return null;
  } catch (err) {
    return `this kernel cannot mount overlay on the temp dir's filesystem (${(err as Error).message})`;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Why this kernel cannot pass overlay's lower layers one at a time (fsconfig `lowerdir+`, Linux 6.8),
 * so chains stop at mount(2)'s limit; null when it can. Asks the overlay driver's own detection.
 */
export async function lowerdirPlusUnavailable(sys: Sys): Promise<string | null> {
  const unavailable = overlayUnavailable(sys);
  if (unavailable) return unavailable;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "strata-lowerdir-plus-probe-"));
  try {
    await detectHost(sys, dir, { method: "fsconfig", nativeDiff: true });
    return null;
  } catch {
    return `this kernel (${os.release()}) has no fsconfig lowerdir+ (Linux 6.8 and later)`;
  } finally {
    unmountBelow(sys, dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
