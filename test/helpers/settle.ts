/** Test helper: wait for a count to come back down (fds and mounts are released a moment after a call settles). */

/** Poll `probe` until it is at most `want` or `ms` pass; returns the last value, for the assertion. */
export async function settle(probe: () => number, want: number, ms = 30_000): Promise<number> {
  const deadline = Date.now() + ms;
  let got = probe();
  while (got > want && Date.now() < deadline) {
    await Bun.sleep(20);
    got = probe();
  }
  return got;
}
