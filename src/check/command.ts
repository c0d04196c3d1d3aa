/** `strata check` (stub while being written). */
import type { Sys } from "../sys/types.ts";
export interface CheckCommand { home: string; repair: boolean; json: boolean; sys: Sys }
export async function runCheck(_cmd: CheckCommand): Promise<number> { return 1; }
