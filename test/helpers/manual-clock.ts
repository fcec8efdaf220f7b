// A device clock the test advances by hand (`setup.clock`): timers run only when the test says
// so, so "after the reply", "before the reset" and "never" are observable without sleeping.
import type { Clock } from "../../src/index.ts";

export class ManualClock implements Clock {
  #queue: Array<{ fn: () => void; live: boolean }> = [];
  #now = 0;
  now(): number {
    return this.#now;
  }
  setTimeout(fn: () => void, _ms: number) {
    const job = { fn, live: true };
    this.#queue.push(job);
    return {
      cancel: () => {
        job.live = false;
      },
    };
  }
  /** Timers scheduled and neither run nor cancelled. */
  get queued(): number {
    return this.#queue.filter((j) => j.live).length;
  }
  /** Run what is due now (jobs queued meanwhile wait for the next call); time moves by 1 ms. */
  run(): void {
    this.#now += 1;
    const jobs = this.#queue;
    this.#queue = [];
    for (const j of jobs) if (j.live) j.fn();
  }
}
