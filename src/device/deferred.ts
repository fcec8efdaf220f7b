// Deferred work of a device model (`ctx.defer(ms, fn)`): timers on the device's clock that the
// framework cancels when the device is reset (DEVICE_RESET, a client's disconnect, a PCI
// function-level or power-state reset) and when it is disposed, so work a model scheduled before a
// reset never runs after it. A cancel takes the timers that have not fired; work already running
// (an async `fn` awaiting DMA) finishes, and the model tells stale results apart itself.
import type { Logger } from "../util/log.ts";
import type { Clock } from "./definition.ts";

/** A deferred call: `cancel` it, or wait for `done` (settles once `fn` has run, including its
 * promise, or once the timer was cancelled; it never rejects). */
export interface Deferred {
  cancel(): void;
  readonly done: Promise<void>;
}

interface Entry {
  cancel(): void;
}

export class DeferredTimers {
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #live = new Set<Entry>();

  constructor(clock: Clock, log: Logger) {
    this.#clock = clock;
    this.#log = log;
  }

  /** Timers scheduled and not yet fired or cancelled. */
  get pending(): number {
    return this.#live.size;
  }

  /** Call `fn` after `ms` milliseconds unless cancelled first; a throw or rejection is logged. */
  defer(ms: number, fn: () => void | Promise<void>): Deferred {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`defer: ${ms} is not a delay in milliseconds`);
    let settle!: () => void;
    const done = new Promise<void>((resolve) => {
      settle = resolve;
    });
    const failed = (err: unknown) => {
      this.#log.error(`deferred work failed: ${err instanceof Error ? err.message : String(err)}`);
      settle();
    };
    const timer = this.#clock.setTimeout(() => {
      this.#live.delete(entry);
      let r: void | Promise<void>;
      try {
        r = fn();
      } catch (err) {
        failed(err);
        return;
      }
      if (r instanceof Promise) r.then(settle, failed);
      else settle();
    }, ms);
    const entry: Entry = {
      cancel: () => {
        if (!this.#live.delete(entry)) return;
        timer.cancel();
        settle();
      },
    };
    this.#live.add(entry);
    return { cancel: entry.cancel, done };
  }

  /** Cancel every timer that has not fired (a reset, dispose). */
  cancelAll(): void {
    for (const e of [...this.#live]) e.cancel();
  }
}
