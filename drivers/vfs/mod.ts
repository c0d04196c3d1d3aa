/** Registers the vfs driver: the lowest priority, since it works everywhere but copies everything. */
import { register } from "../../src/core/driver.ts";
import { registerStoreCheck } from "../../src/check/types.ts";
import { checkVfsStore, vfsLayerIds } from "./check.ts";
import { VFS_LAYOUT, initVfs } from "./driver.ts";

/** vfs's priority for `--driver auto`. */
export const VFS_PRIORITY = 10;

register("vfs", initVfs, VFS_PRIORITY, VFS_LAYOUT);
registerStoreCheck("vfs", checkVfsStore, vfsLayerIds);
