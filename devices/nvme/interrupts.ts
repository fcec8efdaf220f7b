// The controller's completion interrupts. Each completion queue names a vector (IV): with MSI-X
// it is the table entry raised once per completion pass; without, the vector is INTx (or the one
// MSI vector), a level asserted while any unmasked vector has completions the host has not
// consumed (its CQ head is behind our tail). INTMS/INTMC mask and unmask vectors while MSI-X is
// off (the mask is ignored with MSI-X, as the specification says).
import type { Clock, PciIrqApi } from "../../src/index.ts";
import type { CompletionQueue } from "./queues.ts";

export class CqInterrupts {
  /** INTMS: the vectors masked (bit n = vector n). */
  mask = 0;
  /** When the last interrupt was raised (the clock's ms; 0 once its turnaround was counted). */
  lastRaised = 0;
  readonly #irq: PciIrqApi;
  readonly #vectors: number;
  readonly #clock: Clock;
  readonly #counters: { interrupts: number };

  constructor(irq: PciIrqApi, vectors: number, clock: Clock, counters: { interrupts: number }) {
    this.#irq = irq;
    this.#vectors = vectors;
    this.#clock = clock;
    this.#counters = counters;
  }

  /** The vector `raise` takes: MSI-X/INTx use the CQ's vector; beyond the table, the last. */
  vector(iv: number): number {
    return Math.min(iv, this.#vectors - 1);
  }

  signal(iv: number): void {
    if (this.#irq.mode !== "msix" && this.mask & (1 << iv)) return; // masked; INTMC raises it later
    this.#counters.interrupts++;
    this.lastRaised = this.#clock.now();
    this.#irq.raise(this.vector(iv));
  }

  lower(iv: number): void {
    this.#irq.lower(this.vector(iv));
  }

  /** INTx (a level): lowered unless an unmasked CQ on `iv` has completions not consumed. */
  syncVector(iv: number, cqs: Iterable<CompletionQueue>): void {
    if (this.#irq.mode === "msix") return;
    for (const cq of cqs) {
      if (cq.iv === iv && cq.ien && cq.outstanding && !(this.mask & (1 << iv))) return;
    }
    this.lower(iv);
  }

  /** After the mask changed: every vector in use raised or lowered to match. */
  syncLevels(cqs: ReadonlyMap<number, CompletionQueue>): void {
    if (this.#irq.mode === "msix") return;
    const ivs = new Set([...cqs.values()].filter((c) => c.ien).map((c) => c.iv));
    for (const iv of ivs) {
      const pending = [...cqs.values()].some((c) => c.iv === iv && c.ien && c.outstanding);
      if (pending && !(this.mask & (1 << iv))) this.signal(iv);
      else this.syncVector(iv, cqs.values());
    }
  }
}
