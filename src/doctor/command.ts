/** `strata doctor` (stub while being written). */
import type { Sys } from "../sys/types.ts";
export interface DoctorCommand { json: boolean; root: string; dockerSocket: string; sys: Sys; runtime: string }
export async function runDoctor(_cmd: DoctorCommand): Promise<number> { return 1; }
