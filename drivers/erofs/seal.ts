/**
 * What makes a layer an image layer once its image is in place, and what start-up recovery does
 * with an apply or commit a crash cut short: with the image in place the layer is sealed (its
 * markers and upper dir go, the image wins); without one, an ApplyDiff's kept tar and size go
 * (the layer is still what it was before the apply). `strata check --repair` makes the same steps.
 */
import * as fs from "node:fs/promises";
import type { Staging } from "../../src/store/staging.ts";
import { DIFF_DIR, type Layout, PENDING_FILE, RW_FILE, SIZE_FILE, STAGING, TAR_FILE, WORK_DIR } from "./layout.ts";

/** What a layer's directory holds of an image layer's making besides its image. */
export const APPLY_LEFTOVERS = [TAR_FILE, SIZE_FILE] as const;
/** What a layer has while it is an upper dir, which its image replaces. */
export const UPPER_ENTRIES = [RW_FILE, PENDING_FILE, DIFF_DIR, WORK_DIR] as const;

/**
 * The image of `id` is in place: remove its markers, and move its upper and work dirs aside
 * through `staging`, handing each to `remove` (the driver logs what cannot go; a check reports it).
 * @example
 * await sealAsImage(layout, staging, "abc", (aside) => staging.remove(aside));
 */
export async function sealAsImage(layout: Layout, staging: Staging, id: string, remove: (aside: string) => Promise<void>): Promise<void> {
  for (const marker of [RW_FILE, PENDING_FILE]) await fs.rm(layout.of(id, marker), { force: true });
  for (const name of [DIFF_DIR, WORK_DIR]) {
    const aside = await staging.moveAside(layout.of(id, name), STAGING.remove, id);
    if (aside !== null) await remove(aside);
  }
}

/** `id` has no image: the tar and size an ApplyDiff placed before its image go. */
export async function dropApplyLeftovers(layout: Layout, id: string): Promise<void> {
  for (const f of APPLY_LEFTOVERS) await fs.rm(layout.of(id, f), { force: true });
}
