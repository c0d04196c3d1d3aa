/** Let other tasks run: a long synchronous walk would otherwise stall the plugin's servers. */
export function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
