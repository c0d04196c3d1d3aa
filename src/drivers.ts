/** Every built-in driver registers itself on import; importing this module makes them all available. */
import "../drivers/erofs/mod.ts";
import "../drivers/overlay/mod.ts";
import "../drivers/vfs/mod.ts";
