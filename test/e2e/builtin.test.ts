/**
 * The end-to-end scenario on dockerd's own storage drivers, no plugin: proves the harness and the
 * scenario's expectations, and gives a baseline for the plugin's wall times (overlay2 is what users
 * run; vfs is the like-for-like comparison with strata's vfs driver).
 */
import { e2eUnavailableReason } from "./harness.ts";
import { runScenario } from "./scenario.ts";
import { skipUnlessAsked } from "./gate.ts";

const skip = skipUnlessAsked(e2eUnavailableReason(), "the built-in driver tests");

for (const driver of ["overlay2", "vfs"]) {
  runScenario({ name: `built-in ${driver} driver`, skip, storage: { builtin: driver } });
}
