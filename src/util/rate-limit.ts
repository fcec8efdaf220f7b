// Per-key rate limiting for log lines: at most `burst` lines of one key in each window of
// `windowMs`; lines over that are counted, and the count goes out with the key's next line (or
// `drain` hands it over, e.g. when the session ends). The clock is injected for tests.

export interface RateDecision {
  /** Log this one. */
  allowed: boolean;
  /** Lines of this key suppressed since its last allowed one (reported with an allowed one). */
  suppressed: number;
}

interface KeyState {
  windowStart: number;
  used: number;
  suppressed: number;
  /** The last line suppressed, for the summary. */
  last: string;
}

export class RateLimiter {
  readonly #burst: number;
  readonly #windowMs: number;
  readonly #now: () => number;
  readonly #keys = new Map<string, KeyState>();

  constructor(burst: number, windowMs: number, now: () => number = () => performance.now()) {
    this.#burst = burst;
    this.#windowMs = windowMs;
    this.#now = now;
  }

  /** Count one line of `key` (`line` is kept as the example for `drain`). */
  take(key: string, line = key): RateDecision {
    const now = this.#now();
    let k = this.#keys.get(key);
    if (!k) {
      k = { windowStart: now, used: 0, suppressed: 0, last: "" };
      this.#keys.set(key, k);
    } else if (now - k.windowStart >= this.#windowMs) {
      k.windowStart = now;
      k.used = 0;
    }
    if (k.used < this.#burst) {
      k.used++;
      const suppressed = k.suppressed;
      k.suppressed = 0;
      return { allowed: true, suppressed };
    }
    k.suppressed++;
    k.last = line;
    return { allowed: false, suppressed: 0 };
  }

  /** Keys with lines suppressed and not yet reported: the count and the last such line. Forgets
   * every key. */
  drain(): { count: number; last: string }[] {
    const out = [...this.#keys.values()]
      .filter((k) => k.suppressed > 0)
      .map((k) => ({ count: k.suppressed, last: k.last }));
    this.#keys.clear();
    return out;
  }
}
