/**
 * containerd's filter syntax for List: `field[.sub…][op value]` selectors joined by "," (AND);
 * several filter strings are OR. Operators `==`, `!=`, `~=` (regexp); a bare field means present.
 * Values are bare, "double-quoted" (with \ escapes) or /slash-quoted/ (regexps); field parts may be
 * quoted too (`labels."a.b/c"`). Fields of a snapshot: name, parent, kind, labels.KEY.
 */
import { InvalidRequestError } from "../core/errors.ts";
import { type Info, Kind } from "./metadata.ts";

type Op = "==" | "!=" | "~=" | "present";

interface Selector {
  field: string[];
  op: Op;
  value: string;
  re?: RegExp;
}

/** A parsed filter: true for the snapshots it selects. */
export type Filter = (info: Info) => boolean;

const KIND_NAMES: Record<number, string> = { [Kind.View]: "view", [Kind.Active]: "active", [Kind.Committed]: "committed" };

/**
 * Parse List's filter strings into one predicate (no filters select everything).
 * @example
 * parseFilters(['kind==committed,labels."containerd.io/gc.root"'])(info);
 */
export function parseFilters(filters: readonly string[]): Filter {
  const parsed = filters.filter((f) => f.trim() !== "").map(_parseOne);
  if (parsed.length === 0) return () => true;
  return (info) => parsed.some((all) => all.every((s) => _match(s, info)));
}

function _field(info: Info, field: string[]): string | undefined {
  const [head, ...rest] = field;
  switch (head) {
    case "name":
      return rest.length ? undefined : info.key;
    case "parent":
      return rest.length ? undefined : info.parent;
    case "kind":
      return rest.length ? undefined : KIND_NAMES[info.kind];
    case "labels":
      return rest.length ? info.labels[rest.join(".")] : undefined;
    default:
      return undefined;
  }
}

function _match(s: Selector, info: Info): boolean {
  const v = _field(info, s.field);
  switch (s.op) {
    case "present":
      return v !== undefined && v !== "";
    case "==":
      return v === s.value;
    case "!=":
      return v !== s.value;
    case "~=":
      return v !== undefined && s.re!.test(v);
  }
}

function _parseOne(text: string): Selector[] {
  let i = 0;
  const fail = (why: string): never => {
    throw new InvalidRequestError(`Invalid filter ${JSON.stringify(text)}: ${why} at position ${i}`);
  };
  const ws = () => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  const quoted = (q: string): string => {
    i++;
    let out = "";
    while (i < text.length && text[i] !== q) {
      if (text[i] === "\\" && i + 1 < text.length) {
        const n = text[++i]!;
        out += q === "/" && n !== "/" ? `\\${n}` : ({ n: "\n", t: "\t" } as Record<string, string>)[n] ?? n;
      } else out += text[i];
      i++;
    }
    if (i >= text.length) fail(`unterminated ${q}`);
    i++;
    return out;
  };
  const part = (): string => {
    ws();
    if (text[i] === '"') return quoted('"');
    const m = /^[A-Za-z0-9_\-/:@+*]+/.exec(text.slice(i));
    if (!m) fail("expected a field name");
    i += m![0].length;
    return m![0];
  };
  const selectors: Selector[] = [];
  for (;;) {
    const field = [part()];
    while (text[i] === ".") {
      i++;
      field.push(part());
    }
    ws();
    let op: Op = "present";
    let value = "";
    const two = text.slice(i, i + 2);
    if (two === "==" || two === "!=" || two === "~=") {
      op = two;
      i += 2;
      ws();
      if (text[i] === '"' || text[i] === "/") value = quoted(text[i]!);
      else {
        const m = /^[^,\s]*/.exec(text.slice(i))!;
        value = m[0];
        i += value.length;
      }
    }
    const sel: Selector = { field, op, value };
    if (op === "~=") {
      try {
        sel.re = new RegExp(value);
      } catch (err) {
        fail(`bad regular expression (${(err as Error).message})`);
      }
    }
    selectors.push(sel);
    ws();
    if (i >= text.length) return selectors;
    if (text[i] !== ",") fail('expected ","');
    i++;
  }
}
