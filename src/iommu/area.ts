// One area of the IO address space: `[iova, last]` (inclusive, so it may end at 2^64-1), the
// permissions the map granted, and its backing (backing.ts).
//
// Lifetime: "live" while it is in the address space's lookup tree; "closing" from the moment an
// unmap takes it out of the tree (new accesses fault "unmapped", its users are being told and its
// in-flight transfers are finishing); "released" once its backing is gone (windows detached, fd
// closed). Two things hold an area while it lives:
// - holds: zero-copy views and scatter-gather lists a device took; an unmap tells their owner,
//   then invalidates them (their bytes read as empty).
// - in-flight transfers (message-based or trapped peer accesses): an unmap waits for them, after
//   aborting the transfer's remaining messages, so no DMA touches the range after the unmap reply.
import { DmaMapFlag } from "../../protocol/index.ts";
import type { Logger } from "../util/log.ts";
import type { Backing, BackingKind } from "./backing.ts";

export type AreaState = "live" | "closing" | "released";

/** Something a device holds on an area (a view or a scatter-gather list). */
export interface AreaHold {
  /** Who took it (the DeviceDma), to tell the right device. */
  readonly owner: unknown;
  /** The area is going: make every byte view of it empty. Never throws. */
  invalidate(): void;
}

export class Area {
  readonly iova: bigint;
  readonly last: bigint;
  readonly flags: number;
  readonly backing: Backing;
  readonly holds = new Set<AreaHold>();
  #state: AreaState = "live";
  #inflight = 0;
  #idle: (() => void)[] = [];
  readonly #abort = new AbortController();

  constructor(iova: bigint, last: bigint, flags: number, backing: Backing) {
    this.iova = iova;
    this.last = last;
    this.flags = flags;
    this.backing = backing;
  }

  get state(): AreaState {
    return this.#state;
  }

  get live(): boolean {
    return this.#state === "live";
  }

  get size(): bigint {
    return this.last - this.iova + 1n;
  }

  get readable(): boolean {
    return (this.flags & DmaMapFlag.READ) !== 0;
  }

  get writable(): boolean {
    return (this.flags & DmaMapFlag.WRITE) !== 0;
  }

  get kind(): BackingKind {
    return this.backing.kind;
  }

  /** Zero-copy views can be had of it (fd backings, mappable peer regions). */
  get mapped(): boolean {
    return this.backing.mappable;
  }

  /** The fd behind it, -1 for message-backed and trapped memory. OWNERSHIP: the area's. */
  get fd(): number {
    return this.backing.fd;
  }

  /** Aborted when the area starts closing: message transfers stop between two messages. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** A view of `length` bytes at area-relative `at` that does not cross a window edge. */
  view(at: bigint, length: number): Uint8Array {
    return this.backing.view(at, length);
  }

  /** Split [at, at+length) (area-relative) at window edges into views. */
  *pieces(at: bigint, length: number): Generator<Uint8Array> {
    let pos = at;
    let left = length;
    while (left > 0) {
      const n = Math.min(left, this.backing.span(pos));
      yield this.backing.view(pos, n);
      pos += BigInt(n);
      left -= n;
    }
  }

  /** An asynchronous transfer starts on this area (paired with `end`). */
  begin(): void {
    this.#inflight++;
  }

  end(): void {
    if (--this.#inflight === 0) {
      const waiters = this.#idle;
      this.#idle = [];
      for (const w of waiters) w();
    }
  }

  get inflight(): number {
    return this.#inflight;
  }

  /** Resolves once no transfer is in flight. */
  idle(): Promise<void> {
    if (this.#inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Taken out of the lookup tree: refuse new work, stop message transfers. */
  close(): void {
    if (this.#state !== "live") return;
    this.#state = "closing";
    this.#abort.abort(new Error("the area is being unmapped"));
  }

  /** Detach everything and close what is owned. Never throws; idempotent. */
  release(log: Logger | null = null): void {
    if (this.#state === "released") return;
    this.close();
    this.#state = "released";
    this.backing.release(log);
    const holds = [...this.holds];
    this.holds.clear();
    for (const h of holds) {
      try {
        h.invalidate();
      } catch (err) {
        log?.error(`invalidating a DMA view failed: ${(err as Error).message}`);
      }
    }
  }

  describe(): string {
    const perm = `${this.readable ? "r" : "-"}${this.writable ? "w" : "-"}`;
    return `[0x${this.iova.toString(16)}, 0x${this.last.toString(16)}] ${perm} ${this.backing.describe()}`;
  }
}
