/** Registers the erofs driver: below overlay until the benchmarks say otherwise, above vfs. */
import { register } from "../../src/core/driver.ts";
import { registerStoreCheck } from "../../src/check/types.ts";
import { checkErofsStore, erofsLayerIds } from "./check.ts";
import { EROFS_LAYOUT, initErofs } from "./driver.ts";

/** erofs's priority for `--driver auto`. */
export const EROFS_PRIORITY = 15;

register("erofs", initErofs, EROFS_PRIORITY, EROFS_LAYOUT);
registerStoreCheck("erofs", checkErofsStore, erofsLayerIds);
