/** Loaded before every test file (bunfig.toml): teardown for what the whole process shares. */
import { afterAll } from "bun:test";
import { closeBtrfsTempRoot } from "./helpers/btrfs-root.ts";

// A global afterAll: runs once, after the last file, where an exit handler would never run.
afterAll(closeBtrfsTempRoot);
