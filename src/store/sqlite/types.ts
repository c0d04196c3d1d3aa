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

/** Opens a database file, creating it when missing. */
export type OpenDatabase = (file: string) => SqlDatabase;
