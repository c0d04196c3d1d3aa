/** The SQLite interface on Deno: `node:sqlite`. */
import { DatabaseSync } from "node:sqlite";
import type { OpenDatabase, SqlDatabase, SqlStatement, SqlValue } from "./types.ts";

/** Open `file` with node:sqlite. */
export const openDatabase: OpenDatabase = (file: string): SqlDatabase => {
  const db = new DatabaseSync(file);
  const cache = new Map<string, SqlStatement>();
  return {
    exec: (sql) => db.exec(sql),
    prepare(sql) {
      let stmt = cache.get(sql);
      if (!stmt) {
        const q = db.prepare(sql);
        stmt = {
          run: (...p: SqlValue[]) => {
            const r = q.run(...(p as never[]));
            return { lastInsertRowid: Number(r.lastInsertRowid), changes: Number(r.changes) };
          },
          get: (...p: SqlValue[]) => q.get(...(p as never[])) as Record<string, SqlValue> | undefined,
          all: (...p: SqlValue[]) => q.all(...(p as never[])) as Record<string, SqlValue>[],
        };
        cache.set(sql, stmt);
      }
      return stmt;
    },
    close: () => db.close(),
  };
};
