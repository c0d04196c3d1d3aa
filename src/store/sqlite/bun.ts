/** The SQLite interface on Bun: `bun:sqlite`. */
import { Database } from "bun:sqlite";
import type { OpenDatabase, SqlDatabase, SqlStatement, SqlValue } from "./types.ts";

/** Open `file` with bun:sqlite. */
export const openDatabase: OpenDatabase = (file: string): SqlDatabase => {
  const db = new Database(file, { create: true, strict: true });
  const cache = new Map<string, SqlStatement>();
  return {
    exec: (sql) => void db.exec(sql),
    prepare(sql) {
      let stmt = cache.get(sql);
      if (!stmt) {
        const q = db.prepare(sql);
        stmt = {
          run: (...p: SqlValue[]) => {
            const r = q.run(...(p as never[]));
            return { lastInsertRowid: Number(r.lastInsertRowid), changes: r.changes };
          },
          get: (...p: SqlValue[]) => (q.get(...(p as never[])) as Record<string, SqlValue> | null) ?? undefined,
          all: (...p: SqlValue[]) => q.all(...(p as never[])) as Record<string, SqlValue>[],
        };
        cache.set(sql, stmt);
      }
      return stmt;
    },
    close: () => db.close(),
  };
};
