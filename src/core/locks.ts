/** Per-key mutual exclusion: one operation at a time per layer ID, any number across IDs. */

/**
 * A mutex per key; entries disappear when unused.
 * @example
 * const locks = new KeyedLock();
 * await locks.run("layer-id", async () => { ... });
 */
export class KeyedLock {
  #tails = new Map<string, Promise<void>>();

  /** Run `fn` once every earlier `run` on `key` has settled. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = previous.then(() => mine);
    this.#tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }

  /** Run `fn` holding the locks of several keys, taken in sorted order so two callers cannot deadlock. */
  async runAll<T>(keys: string[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort();
    const step = (i: number): Promise<T> => (i === sorted.length ? fn() : this.run(sorted[i], () => step(i + 1)));
    return step(0);
  }
}
