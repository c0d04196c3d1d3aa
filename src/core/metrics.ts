/**
 * Prometheus metrics in the text exposition format (version 0.0.4), written here rather than taken
 * from a client library: prom-client is Node-only (it reads `process` internals and `perf_hooks`
 * Deno lacks), and counters, one histogram and a few gauges read at scrape time are all strata
 * needs. Front ends record calls (`observeCall`), drivers are read when scraped (`addCollector`).
 */
import process from "node:process";

/** Label names and values of one series. */
export type Labels = Record<string, string>;

/** Call latency buckets, in seconds: Exists/Get take tens of µs, ApplyDiff of a big layer minutes. */
export const DURATION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300] as const;

/** The content type of the text format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** One sample a collector reports at scrape time. */
export interface GaugeSample {
  name: string;
  help: string;
  labels?: Labels;
  value: number;
}

/** Reads gauges when scraped (a driver's layers and mounts, the process's RSS). */
export type Collector = () => Promise<GaugeSample[]> | GaugeSample[];

interface _Family {
  help: string;
  type: "counter" | "histogram" | "gauge";
  series: Map<string, { labels: Labels; value: number; buckets?: number[]; sum?: number }>;
}

/**
 * A metrics registry: counters and histograms kept in memory, gauges read from collectors at scrape.
 * @example
 * const m = new Metrics();
 * m.observeCall("graphdriver", "Create", "ok", 0.004);
 * await m.render(); // "# HELP strata_calls_total …\nstrata_calls_total{frontend="graphdriver",method="Create",outcome="ok"} 1\n…"
 */
export class Metrics {
  #families = new Map<string, _Family>();
  #collectors: Collector[] = [];
  /** Each histogram's bucket bounds, as first observed. */
  #bounds = new Map<string, readonly number[]>();

  /** Add `by` to counter `name` (created with `help` on first use). */
  count(name: string, help: string, labels: Labels, by = 1): void {
    const s = this.#series(name, help, "counter", labels);
    s.value += by;
  }

  /** Record `value` in histogram `name` over `buckets` (upper bounds, ascending). */
  observe(name: string, help: string, labels: Labels, value: number, buckets: readonly number[] = DURATION_BUCKETS): void {
    const s = this.#series(name, help, "histogram", labels);
    s.buckets ??= new Array(buckets.length).fill(0);
    s.sum = (s.sum ?? 0) + value;
    s.value += 1;
    for (let i = 0; i < buckets.length; i++) if (value <= buckets[i]) s.buckets[i] += 1;
    this.#bounds.set(name, buckets);
  }

  /**
   * One finished call of a front end: `outcome` is "ok" or the error's kind ("not-found", "busy",
   * "internal"…). Counts the call, its latency, and a failed call's error kind.
   */
  observeCall(frontend: string, method: string, outcome: string, seconds: number): void {
    this.count("strata_calls_total", "Calls served, by front end, method and outcome (ok or the error kind).", { frontend, method, outcome });
    this.observe("strata_call_duration_seconds", "Latency of calls until the answer (for Diff: until the stream starts).", { frontend, method }, seconds);
    if (outcome !== "ok") this.count("strata_errors_total", "Failed calls by error kind.", { frontend, kind: outcome });
  }

  /** Add a gauge collector, read at every scrape; one that throws is skipped for that scrape. */
  addCollector(collector: Collector): void {
    this.#collectors.push(collector);
  }

  /** Everything in the text format, families sorted by name. */
  async render(): Promise<string> {
    const gauges = new Map<string, _Family>();
    for (const collect of this.#collectors) {
      let samples: GaugeSample[];
      try {
        samples = await collect();
      } catch {
        // A driver that cannot answer now (being re-initialised) must not take the whole scrape down.
        continue;
      }
      for (const g of samples) {
        let f = gauges.get(g.name);
        if (!f) gauges.set(g.name, (f = { help: g.help, type: "gauge", series: new Map() }));
        const labels = g.labels ?? {};
        f.series.set(_key(labels), { labels, value: g.value });
      }
    }
    const all = [...this.#families, ...gauges].sort(([a], [b]) => a.localeCompare(b));
    let out = "";
    for (const [name, f] of all) {
      out += `# HELP ${name} ${_escapeHelp(f.help)}\n# TYPE ${name} ${f.type}\n`;
      for (const s of f.series.values()) {
        if (f.type !== "histogram") {
          out += `${name}${_labels(s.labels)} ${_num(s.value)}\n`;
          continue;
        }
        const bounds = this.#bounds.get(name) ?? [];
        bounds.forEach((le, i) => (out += `${name}_bucket${_labels({ ...s.labels, le: _num(le) })} ${s.buckets![i]}\n`));
        out += `${name}_bucket${_labels({ ...s.labels, le: "+Inf" })} ${s.value}\n`;
        out += `${name}_sum${_labels(s.labels)} ${_num(s.sum ?? 0)}\n${name}_count${_labels(s.labels)} ${s.value}\n`;
      }
    }
    return out;
  }

  #series(name: string, help: string, type: "counter" | "histogram", labels: Labels) {
    let f = this.#families.get(name);
    if (!f) this.#families.set(name, (f = { help, type, series: new Map() }));
    const key = _key(labels);
    let s = f.series.get(key);
    if (!s) f.series.set(key, (s = { labels, value: 0 }));
    return s;
  }
}

/** The process's resident set size, as the standard `process_resident_memory_bytes` gauge. */
export const processCollector: Collector = () => [
  { name: "process_resident_memory_bytes", help: "Resident memory size in bytes.", value: process.memoryUsage().rss },
];

/**
 * `stream` as it is, counting its bytes into `onBytes` as they are read; pulls one chunk per read
 * (no buffering ahead), so a layer still streams at the reader's pace.
 */
export function countBytes(stream: ReadableStream<Uint8Array>, onBytes: (n: number) => void): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) return controller.close();
      onBytes(value.byteLength);
      controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
}

function _key(labels: Labels): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));
}

function _labels(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

function _escapeHelp(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function _num(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}
