/**
 * Whether a layer's image mounts: it is mounted read-only on a fresh directory outside Home, looked
 * into, and unmounted, so a check learns what the driver's next start would without touching the
 * store. Used for images that are not mounted (overlay's size-limited layers, erofs's images).
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { hasCode } from "../core/errors.ts";
import { unmount } from "../mount/mounter.ts";
import type { Sys } from "../sys/types.ts";

/** Thrown when this process may not attach loop devices or mount: the image was not tried. */
export class CannotTryMount extends Error {}

/**
 * Mount an image with `mount(dir)` on a temp dir outside Home and run `look(dir)` on it (what is
 * wrong inside, or null); returns why it does not mount or what `look` found, null when it is
 * sound. Throws CannotTryMount on EPERM or EACCES.
 * @example
 * const problem = await testMount(sys, (dir) => sys.mount(image, dir, "erofs", MS.RDONLY, ""));
 */
export async function testMount(sys: Sys, mount: (dir: string) => void, look: (dir: string) => string | null = () => null): Promise<string | null> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "strata-check-image-"));
  try {
    mount(dir);
    try {
      return look(dir);
    } finally {
      unmount(sys, dir);
    }
  } catch (err) {
    const cause = (err as Error & { cause?: unknown }).cause ?? err;
    if (hasCode(err, "EPERM", "EACCES") || hasCode(cause, "EPERM", "EACCES")) throw new CannotTryMount((err as Error).message);
    return (err as Error).message;
  } finally {
    await fs.rmdir(dir).catch(() => {});
  }
}
