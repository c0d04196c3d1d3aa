/**
 * The one small SQLite interface the metadata store uses, so the core never imports a runtime:
 * `bun.ts` wraps `bun:sqlite`, `deno.ts` wraps `node:sqlite`. Statements are synchronous.
 */

/** A value a column holds or a parameter takes. */
export type SqlValue = string | number | bigint | null | Uint8Array;

/** A prepared statement. */
export interface SqlStatement {
  /** Run it; returns the rowid of an INSERT and how many rows changed. */
  run(...params: SqlValue[]): { lastInsertRowid: number; changes: number };
  /** The first row, or undefined. */
  get(...params: SqlValue[]): Record<string, SqlValue> | undefined;
  /** Every row. */
  all(...params: SqlValue[]): Record<string, SqlValue>[];
}

/** An open database. */
export interface SqlDatabase {
  /** Run statements that take no parameters (schema, pragmas). */
  exec(sql: string): void;
  /** Prepare (and cache) a statement. */
  prepare(sql: string): SqlStatement;
  close(): void;
}

/** Opens a database file, creating it when missing; `readonly` opens an existing one for reading only (`strata check`). */
export type OpenDatabase = (file: string, opts?: { readonly?: boolean }) => SqlDatabase;

/** What both runtimes' SQLite statements can do; `wrapDatabase` adapts them to SqlDatabase. */
export interface NativeDatabase {
  exec(sql: string): unknown;
  prepare(sql: string): {
    run(...params: never[]): { lastInsertRowid: number | bigint; changes: number | bigint };
    get(...params: never[]): unknown;
    all(...params: never[]): unknown[];
  };
  close(): void;
}

/** A runtime's database as a SqlDatabase, statements prepared once per SQL text. */
export function wrapDatabase(db: NativeDatabase): SqlDatabase {
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
            return { lastInsertRowid: Number(r.lastInsertRowid), changes: Number(r.changes) };
          },
          get: (...p: SqlValue[]) => (q.get(...(p as never[])) ?? undefined) as Record<string, SqlValue> | undefined,
          all: (...p: SqlValue[]) => q.all(...(p as never[])) as Record<string, SqlValue>[],
        };
        cache.set(sql, stmt);
      }
      return stmt;
    },
    close: () => db.close(),
  };
}
