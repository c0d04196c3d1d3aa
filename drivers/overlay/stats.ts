/** What the overlay driver reports for metrics: its size-limited layers' limits and use, read from disk. */
import { statSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { SizeLimitedUse } from "../../src/core/driver-stats.ts";
import { LAYER_ID_PATTERN } from "../../src/core/layer-id.ts";
import type { Sys } from "../../src/sys/types.ts";
import { IMAGE_SUFFIX, type Layout } from "./layout.ts";

/**
 * Every image in `.quota/`: its size is the limit; the blocks in use of the filesystem mounted on
 * the layer's directory are the use (0 when nothing is mounted there: the directory is then on
 * Home's own filesystem).
 * @example
 * await sizeLimitedUse(sys, new Layout(home)); // [{ id: "c1", limitBytes: 1073741824, usedBytes: 5111808 }]
 */
export async function sizeLimitedUse(sys: Sys, layout: Layout): Promise<SizeLimitedUse[]> {
  const names = await fs.readdir(layout.quotaDir).catch(() => [] as string[]);
  const homeDev = statSync(layout.home).dev;
  const out: SizeLimitedUse[] = [];
  for (const name of names) {
    const id = name.endsWith(IMAGE_SUFFIX) ? name.slice(0, -IMAGE_SUFFIX.length) : "";
    if (!LAYER_ID_PATTERN.test(id)) continue;
    const image = statSync(path.join(layout.quotaDir, name), { throwIfNoEntry: false });
    if (!image?.isFile()) continue;
    const dir = path.join(layout.home, id);
    const mounted = statSync(dir, { throwIfNoEntry: false });
    let usedBytes = 0;
    if (mounted?.isDirectory() && mounted.dev !== homeDev) {
      const st = sys.statfs(dir);
      usedBytes = (st.blocks - st.bfree) * st.bsize;
    }
    out.push({ id, limitBytes: image.size, usedBytes });
  }
  return out;
}
