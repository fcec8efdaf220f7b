// The pump: fetches commands from every submission queue and runs them, admin commands one at a
// time, I/O commands concurrently. A doorbell write (a trapped REGION_WRITE) only records the new
// index and kicks the pump, which runs on a later turn (setImmediate): the handler never waits
// for DMA (QEMU blocks in its write until we reply, and it serves our DMA requests on the same
// connection). Each command completes out of the handler by queueing its completion on the
// controller, which posts the completions of one event-loop pass together.
//
// Shadow doorbells (Doorbell Buffer Config): for I/O queues the host writes new tails/heads in a
// guest page and rings the MMIO doorbell only when the index passes the event index we publish.
// We publish "the tail we have consumed" only when the queue is idle (empty, nothing in flight),
// so the host rings once per burst after we went idle; while busy, every completion pass re-reads
// the shadow tails. When the host keeps a queue (two or more commands found in one pass, or two
// or more completions it has not consumed) an idle SQ holds its event index instead and the poll
// timer (1 ms) looks at the shadow again; only a timer pass that finds nothing new publishes. A
// guest at queue depth 16 then submits without MMIO doorbells and takes its completions in
// larger batches under fewer interrupts (see the README's guest benchmark); a lone command
// (queue depth 1) publishes at once. After publishing we re-read the shadow (a submission racing
// the publish is seen), and poll the shadow on the timer besides (1 ms after activity, backing
// off to 64 ms). The shadow pages and the rings are read and written through mapped views when
// guest memory is fd-backed (synchronously), else through DMA messages.
import type { Deferred } from "../../src/index.ts";
import { handleAdmin } from "./admin.ts";
import type { CommandResult, NvmeController } from "./controller.ts";
import { handleIo } from "./io.ts";
import type { SubmissionQueue } from "./queues.ts";
import { NvmeStatus, SQE_SIZE, Status } from "./spec.ts";

/** What started a pump pass: an MMIO doorbell, a completion pass, the poll timer. */
export type KickReason = "mmio" | "completion" | "timer" | null;

const POLL_MIN_MS = 1;
/** Commands in one pass (or completions the host has not consumed) that make an idle SQ wait
 * one poll tick before it publishes its event index. */
const HOLD_MIN_BURST = 2;
const POLL_MAX_MS = 64;

export class CommandPump {
  readonly #c: NvmeController;
  #kickReason: KickReason = null;
  #pumpReason: KickReason = null;
  /** A submission queue went idle after a burst and keeps its event index for a timer tick. */
  #holding = false;
  #scheduled = false;
  #running = false;
  #again = false;
  #poll: Deferred | null = null;
  #pollMs = POLL_MIN_MS;

  constructor(controller: NvmeController) {
    this.#c = controller;
  }

  /** Stop the shadow poll (a controller reset, dispose). */
  cancelPoll(): void {
    this.#poll?.cancel();
    this.#poll = null;
  }

  #shadowRead(slot: number): number | null | Promise<number | null> {
    const b = this.#c.dbbuf;
    return b ? b.read(slot) : null;
  }

  /** Schedule the pump (never runs it inside the caller). */
  kick(reason: KickReason = null): void {
    this.#kickReason ??= reason;
    this.#again = true;
    if (this.#scheduled || this.#running) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.#pump();
    });
  }

  async #pump(): Promise<void> {
    const c = this.#c;
    if (this.#running) return;
    this.#running = true;
    let worked = false;
    this.#holding = false;
    try {
      while (this.#again) {
        this.#again = false;
        this.#pumpReason = this.#kickReason;
        this.#kickReason = null;
        c.ns.beginPass();
        for (const sq of [...c.sqs.values()]) {
          if (await this.#drain(sq)) worked = true;
        }
      }
    } finally {
      this.#running = false;
    }
    if (c.dbbuf) this.schedulePoll(worked || this.#holding);
  }

  /** Look at the shadow again after the poll interval: 1 ms after activity, doubling to 64 ms. */
  schedulePoll(active: boolean): void {
    const c = this.#c;
    this.#poll?.cancel();
    this.#pollMs = active ? POLL_MIN_MS : Math.min(this.#pollMs * 2, POLL_MAX_MS);
    // ctx.defer: any reset of the device cancels the poll (a controller reset cancels it itself).
    this.#poll = c.ctx.defer(this.#pollMs, () => {
      this.#poll = null;
      if (!c.dbbuf) return;
      c.counters.shadowPolls++;
      this.kick("timer");
    });
  }

  /** Fetch and start every command up to the tail; true when any was fetched. */
  async #drain(sq: SubmissionQueue): Promise<boolean> {
    const c = this.#c;
    const gen = c.generation;
    let worked = false;
    for (;;) {
      if (sq.deleted || gen !== c.generation) return worked;
      if (c.dbbuf && sq.id > 0) {
        const r = this.#shadowRead(sq.id * 2);
        const shadow = r instanceof Promise ? await r : r;
        if (shadow === null || gen !== c.generation || sq.deleted) return worked;
        if (shadow < sq.size) sq.tail = shadow;
      }
      if (sq.empty) {
        if (!c.dbbuf || sq.id === 0) return worked;
        // Publish the event index only once the queue is idle: while commands are in flight the
        // host keeps writing only the shadow tail (no MMIO doorbell), and every completion pass
        // kicks the pump, which re-reads it. Once idle, publish what we consumed and re-read the
        // shadow (a submission racing the publish is seen).
        if (sq.inflight.size > 0 || sq.published === sq.tail) return worked;
        // When the host keeps a queue (HOLD_MIN_BURST or more commands found in one pass, or as
        // many completions it has not consumed yet) it will submit again soon:
        // keep the event index where it is (no MMIO doorbell) and look at the shadow again on the
        // next timer tick; only a timer pass that finds nothing new publishes. A lone command
        // (queue depth 1: one completion outstanding) publishes at once.
        if (
          c.opts.holdPoll &&
          (sq.lastBatch >= HOLD_MIN_BURST || this.#unconsumed(sq) >= HOLD_MIN_BURST) &&
          (worked || this.#pumpReason !== "timer")
        ) {
          this.#holding = true;
          return worked;
        }
        sq.published = sq.tail;
        const w = c.dbbuf?.write(sq.id * 2, sq.tail);
        if (w) await w;
        continue;
      }
      while (!sq.empty) {
        const count = sq.tail > sq.head ? sq.tail - sq.head : sq.size - sq.head;
        let batch: Uint8Array;
        try {
          const r = sq.ring.read(sq.head, count);
          batch = r instanceof Promise ? await r : r;
        } catch (err) {
          c.fatal(`fetching from SQ ${sq.id}`, err);
          return worked;
        }
        if (sq.deleted || gen !== c.generation) return worked;
        sq.lastBatch = count;
        for (let i = 0; i < count; i++) {
          sq.head = (sq.head + 1) % sq.size;
          const sqe = batch.subarray(i * SQE_SIZE, (i + 1) * SQE_SIZE);
          worked = true;
          c.counters.commands++;
          this.#found();
          if (sq.id === 0) await this.#run(sq, sqe);
          else void this.#run(sq, sqe);
        }
      }
      if (!c.dbbuf || sq.id === 0) return worked;
    }
  }

  /** Completions posted on the SQ's CQ that the host has not consumed (its shadow head), or 0
   * when the shadow is not mapped. */
  #unconsumed(sq: SubmissionQueue): number {
    const c = this.#c;
    const cq = c.cqs.get(sq.cqid);
    if (!cq) return 0;
    const head = this.#shadowRead(cq.id * 2 + 1);
    if (typeof head !== "number" || head >= cq.size) return 0;
    return (cq.tail - head + cq.size) % cq.size;
  }

  #found(): void {
    const { counters, irqs, ctx } = this.#c;
    const r = this.#pumpReason;
    if (r === "mmio") counters.foundByMmio++;
    else if (r === "completion") counters.foundByCompletion++;
    else if (r === "timer") counters.foundByTimer++;
    if (irqs.lastRaised > 0) {
      counters.turnaroundUs += (ctx.clock.now() - irqs.lastRaised) * 1000;
      counters.turnarounds++;
      irqs.lastRaised = 0;
    }
  }

  #run(sq: SubmissionQueue, sqe: Uint8Array): Promise<void> {
    const c = this.#c;
    const gen = c.generation;
    const t0 = c.ctx.clock.now();
    const cid = sqe[2]! | (sqe[3]! << 8);
    const p = (async () => {
      let r: CommandResult | null;
      try {
        const flags = sqe[1]!;
        if ((flags & 3) !== 0) throw new NvmeStatus(Status.INVALID_FIELD, "fused commands");
        r = sq.id === 0 ? await handleAdmin(c, sqe) : await handleIo(c, sqe);
      } catch (err) {
        r = { status: c.statusOf(err) };
      }
      c.counters.serviceUs += (c.ctx.clock.now() - t0) * 1000;
      if (r && gen === c.generation && !sq.deleted) c.complete(sq, cid, r);
    })();
    sq.inflight.add(p);
    void p.finally(() => sq.inflight.delete(p));
    return p;
  }
}
