/**
 * Randomised round trip: many generated layers (seeded, so a failure names the seed that
 * reproduces it), each written as an image, fsck'd, mounted and walked, must equal the same tar
 * applied to a directory. `STRATA_EROFS_SEED=n` runs one seed; `STRATA_EROFS_TREES` sets how many.
 */
import { describe, expect, test } from "bun:test";
import { removeRootsAfterEach } from "../archive/layer-fixtures.ts";
import { roundTrip, SKIP_REASON } from "./erofs-fixtures.ts";
import { randomLayer } from "./random-layer.ts";

removeRootsAfterEach();

const one = process.env.STRATA_EROFS_SEED;
const trees = Number(process.env.STRATA_EROFS_TREES ?? 40);
const seeds = one !== undefined ? [Number(one)] : Array.from({ length: trees }, (_, i) => 1_000 + i);

describe(`random layers as images${SKIP_REASON ? ` (skipped: ${SKIP_REASON})` : ""}`, () => {
  test.skipIf(!!SKIP_REASON)(`${seeds.length} generated layers equal their directory apply`, async () => {
    let entries = 0;
    for (const seed of seeds) {
      const items = randomLayer(seed);
      entries += items.length;
      const { image, applied } = await roundTrip(items);
      // The seed in the failure message reproduces the case: STRATA_EROFS_SEED=<seed>.
      expect({ seed, image }).toEqual({ seed, image: applied });
    }
    expect(entries).toBeGreaterThan(seeds.length * 20);
  }, 120_000);
});
