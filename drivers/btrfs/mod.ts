/**
 * Registers the btrfs driver: below overlay, which also runs on btrfs and is what moby's own
 * priority list puts first ("overlay2,fuse-overlayfs,btrfs,zfs,vfs"), and below erofs (15), which also
 * needs overlayfs; above vfs, which copies.
 */
import { register } from "../../src/core/driver.ts";
import { registerStoreCheck } from "../../src/check/types.ts";
import { btrfsLayerIds, checkBtrfsStore } from "./check.ts";
import { BTRFS_LAYOUT, initBtrfs } from "./driver.ts";

/** btrfs's priority for `--driver auto`. */
export const BTRFS_PRIORITY = 14;

register("btrfs", initBtrfs, BTRFS_PRIORITY, BTRFS_LAYOUT);
registerStoreCheck("btrfs", checkBtrfsStore, btrfsLayerIds);
