/** The SQLite interface on Bun: `bun:sqlite`. */
import { Database } from "bun:sqlite";
import { type OpenDatabase, wrapDatabase } from "./types.ts";

/** Open `file` with bun:sqlite. */
export const openDatabase: OpenDatabase = (file) => wrapDatabase(new Database(file, { create: true, strict: true }));
