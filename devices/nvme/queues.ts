// Submission and completion queues: rings of 64-byte commands and 16-byte completions in guest
// memory, their head/tail indices and the completion queue's phase tag.
//
// A ring keeps a zero-copy view of its guest memory when the memory is fd-backed (ctx.dma.view),
// so fetching a command and posting a completion are synchronous copies; otherwise (guest RAM
// without an fd) it goes through ctx.dma.read/write messages. A view emptied by an unmap falls back
// to messages, which then fault.
//
// A completion is written in two steps, the first 14 bytes and then the status word that holds
// the phase tag, so a driver polling the phase never sees a half-written entry. Completions wait
// in `pending` while the queue is full (the tail would reach the head) and go out when the head
// moves (a head doorbell, or the shadow doorbell).
import type { DmaApi, DmaView } from "../../src/index.ts";
import { CQE_SIZE, SQE_SIZE } from "./spec.ts";

export class Ring {
  readonly base: bigint;
  readonly size: number;
  readonly entrySize: number;
  readonly #dma: DmaApi;
  #view: DmaView | null = null;

  constructor(dma: DmaApi, base: bigint, size: number, entrySize: number, access: "read" | "rw") {
    this.#dma = dma;
    this.base = base;
    this.size = size;
    this.entrySize = entrySize;
    const length = size * entrySize;
    if (dma.mappable(base, length)) {
      try {
        this.#view = dma.view(base, length, access);
      } catch {
        this.#view = null;
      }
    }
  }

  #bytes(): Uint8Array | null {
    const v = this.#view;
    return v && v.bytes.length > 0 ? v.bytes : null;
  }

  /** `count` entries from `index` (no wrap). Rejects with a DmaFault. */
  read(index: number, count: number): Uint8Array | Promise<Uint8Array> {
    const off = index * this.entrySize;
    const b = this.#bytes();
    if (b) return b.slice(off, off + count * this.entrySize);
    return this.#dma.read(this.base + BigInt(off), count * this.entrySize);
  }

  /** Write an entry at `index`, `split` bytes first and then the rest: synchronous through the
   * view, else a DMA write (a promise that rejects with a DmaFault). */
  write(index: number, entry: Uint8Array, split: number): void | Promise<void> {
    const off = index * this.entrySize;
    const b = this.#bytes();
    if (b) {
      for (let i = 0; i < split; i++) b[off + i] = entry[i]!;
      for (let i = split; i < entry.length; i++) b[off + i] = entry[i]!;
      return;
    }
    return this.#dma.write(this.base + BigInt(off), entry.slice());
  }

  release(): void {
    this.#view?.release();
    this.#view = null;
  }
}

export class SubmissionQueue {
  readonly id: number;
  readonly cqid: number;
  readonly ring: Ring;
  head = 0;
  tail = 0;
  deleted = false;
  /** The event index last published (shadow doorbells), -1 before any. */
  published = -1;
  /** Commands fetched by the last fetch from the ring (one pass's burst). */
  lastBatch = 0;
  /** Commands fetched and not yet completed. */
  readonly inflight = new Set<Promise<void>>();

  constructor(dma: DmaApi, id: number, base: bigint, size: number, cqid: number) {
    this.id = id;
    this.cqid = cqid;
    this.ring = new Ring(dma, base, size, SQE_SIZE, "read");
  }

  get size(): number {
    return this.ring.size;
  }

  get empty(): boolean {
    return this.head === this.tail;
  }
}

export interface Completion {
  dw0: number;
  sqid: number;
  cid: number;
  /** SCT << 8 | SC */
  status: number;
  /** The submission queue: its head is read when the completion is written. */
  sq: { readonly head: number };
  /** When the command's handler finished (performance.now()). */
  t: number;
}

export class CompletionQueue {
  readonly id: number;
  readonly ring: Ring;
  readonly iv: number;
  readonly ien: boolean;
  head = 0;
  tail = 0;
  phase = 1;
  /** Submission queues that post here. */
  readonly sqs = new Set<number>();
  readonly pending: Completion[] = [];
  /** Completions written to memory since the last interrupt. */
  unsignalled = 0;
  /** A flush of `pending` is scheduled for the end of this event-loop pass. */
  flushScheduled = false;

  constructor(dma: DmaApi, id: number, base: bigint, size: number, iv: number, ien: boolean) {
    this.id = id;
    this.iv = iv;
    this.ien = ien;
    this.ring = new Ring(dma, base, size, CQE_SIZE, "rw");
  }

  get size(): number {
    return this.ring.size;
  }

  get full(): boolean {
    return (this.tail + 1) % this.size === this.head;
  }

  /** Entries written and not yet consumed by the host. */
  get outstanding(): boolean {
    return this.head !== this.tail;
  }

  readonly #entry = new Uint8Array(CQE_SIZE);
  readonly #entryView = new DataView(this.#entry.buffer);

  /** Write one completion at the tail (the caller checked `full`): synchronous when the ring is
   * mapped, else a promise that rejects with a DmaFault. */
  write(c: Completion): void | Promise<void> {
    const e = this.#entry;
    const v = this.#entryView;
    v.setUint32(0, c.dw0 >>> 0, true);
    v.setUint16(8, c.sq.head, true);
    v.setUint16(10, c.sqid, true);
    v.setUint16(12, c.cid, true);
    const sct = (c.status >> 8) & 7;
    const sc = c.status & 0xff;
    // DNR for every error: nothing here succeeds by retrying the same command.
    const dnr = c.status !== 0 ? 1 : 0;
    v.setUint16(14, this.phase | (sc << 1) | (sct << 9) | (dnr << 15), true);
    const index = this.tail;
    this.tail = (this.tail + 1) % this.size;
    if (this.tail === 0) this.phase ^= 1;
    return this.ring.write(index, e, 14);
  }
}
