/** Registers the overlay driver: above vfs, since it shares its parents' files instead of copying them. */
import { register } from "../../src/core/driver.ts";
import { registerStoreCheck } from "../../src/check/types.ts";
import { checkOverlayStore, overlayLayerIds } from "./check.ts";
import { OVERLAY_LAYOUT, initOverlay } from "./driver.ts";

/** overlay's priority for `--driver auto`. */
export const OVERLAY_PRIORITY = 20;

register("overlay", initOverlay, OVERLAY_PRIORITY, OVERLAY_LAYOUT);
registerStoreCheck("overlay", checkOverlayStore, overlayLayerIds);
