// The device's clock (`ctx.clock`): monotonic milliseconds and timers that the device can cancel,
// all of which go when the device is disposed.
import type { Clock } from "./definition.ts";

export class RealClock implements Clock {
  readonly #timers = new Set<NodeJS.Timeout>();
  now(): number {
    return performance.now();
  }
  setTimeout(fn: () => void, ms: number): { cancel(): void } {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, ms);
    this.#timers.add(t);
    return {
      cancel: () => {
        clearTimeout(t);
        this.#timers.delete(t);
      },
    };
  }
  cancelAll(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }
}
