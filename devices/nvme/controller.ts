// The NVMe controller: BAR0 registers, the CC/CSTS state machine, the queue table, doorbells
// (MMIO and shadow), command fetch and completion posting, interrupts.
//
// Enable (CC.EN 0→1): AQA, ASQ, ACQ, CC.MPS and CC.CSS are checked; good ones create the admin
// queues and set CSTS.RDY, bad ones set CSTS.CFS. Disable (CC.EN 1→0) is a controller reset: the
// generation moves on (completions of commands still running are dropped), every queue is deleted,
// held Asynchronous Event Requests are dropped, shadow doorbells are off; CSTS.RDY drops once the
// commands that were running have settled. Shutdown (CC.SHN 01/10): CSTS.SHST reads "occurring"
// until the namespace file is fdatasync'ed, then "complete". FLR and DEVICE_RESET reset the
// registers too.
//
// Processing: a doorbell write (a trapped REGION_WRITE) only records the new index and schedules
// the pump with setImmediate: the handler never waits for DMA (QEMU blocks in its write until we
// reply, and it serves our DMA requests on the same connection). The pump fetches commands from
// every submission queue, admin commands one at a time, I/O commands concurrently; each completes
// out of the handler by queueing its completion; the completions queued in one event-loop pass
// are posted together (setImmediate) and the CQ's vector is raised once for them.
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
import {
  type DmaApi,
  DmaFault,
  type DmaSgList,
  type DmaView,
  type PciDeviceContext,
} from "../../src/index.ts";
import { handleAdmin } from "./admin.ts";
import { handleIo } from "./io.ts";
import type { Namespace } from "./namespace.ts";
import { PageLists } from "./page-lists.ts";
import { CompletionQueue, SubmissionQueue } from "./queues.ts";
import { Cc, Csts, NVME_VERSION, NvmeStatus, PAGE_SIZE, Reg, SQE_SIZE, Status } from "./spec.ts";

export interface ControllerOptions {
  /** Doorbell stride: 4 << dstrd bytes. */
  dstrd: number;
  /** Maximum queue entries (CAP.MQES + 1). */
  maxQueueEntries: number;
  /** I/O queue pairs offered (Number of Queues). */
  maxIoQueues: number;
  /** Interrupt vectors (the MSI-X table size). */
  vectors: number;
  /** Shadow doorbells: after a burst, poll one timer tick before publishing the event index. */
  holdPoll?: boolean;
}

/** What a command handler returns: a completion, or null when it completes later (AER). */
export interface CommandResult {
  status: number;
  dw0?: number;
}

export interface Features {
  arbitration: number;
  powerState: number;
  temperatureThreshold: number;
  errorRecovery: number;
  volatileWriteCache: boolean;
  /** 0-based NSQR/NCQR as granted (DW0 of Number of Queues). */
  queuesGranted: number | null;
  coalescing: number;
  vectorConfig: Map<number, number>;
  asyncEventConfig: number;
}

function defaultFeatures(): Features {
  return {
    arbitration: 0,
    powerState: 0,
    temperatureThreshold: 0x0157, // 343 K
    errorRecovery: 0,
    volatileWriteCache: true,
    queuesGranted: null,
    coalescing: 0,
    vectorConfig: new Map(),
    asyncEventConfig: 0,
  };
}

const POLL_MIN_MS = 1;
/** Commands in one pass (or completions the host has not consumed) that make an idle SQ wait
 * one poll tick before it publishes its event index. */
const HOLD_MIN_BURST = 2;
const POLL_MAX_MS = 64;

export class NvmeController {
  readonly ctx: PciDeviceContext;
  readonly dma: DmaApi;
  readonly ns: Namespace;
  readonly opts: ControllerOptions;
  readonly cap: bigint;
  cc = 0;
  csts = 0;
  aqa = 0;
  asq = 0n;
  acq = 0n;
  intms = 0;
  /** Moves on at every reset: work of an older generation posts nothing. */
  generation = 0;
  readonly sqs = new Map<number, SubmissionQueue>();
  readonly cqs = new Map<number, CompletionQueue>();
  features: Features = defaultFeatures();
  /** Held Asynchronous Event Requests (command ids on the admin queue). */
  readonly aers: number[] = [];
  /** Shadow doorbell and event index buffers (Doorbell Buffer Config), or null. */
  dbbuf: { dbs: bigint; eis: bigint; dbsView: DmaView | null; eisView: DmaView | null } | null = null;
  readonly counters = {
    mmioDoorbells: 0,
    shadowPolls: 0,
    commands: 0,
    interrupts: 0,
    dmaErrors: 0,
    /** Commands found by a pump started by: an MMIO doorbell, a completion pass, the poll timer. */
    foundByMmio: 0,
    foundByCompletion: 0,
    foundByTimer: 0,
    /** Sums in microseconds over all commands: fetch → handler done, handler done → CQE posted. */
    serviceUs: 0,
    postUs: 0,
    /** Sum over interrupts of the time until the next command was fetched (guest turnaround plus
     * our discovery delay), and how many gaps were summed. */
    turnaroundUs: 0,
    turnarounds: 0,
  };
  #lastIrq = 0;
  #kickReason: "mmio" | "completion" | "timer" | null = null;
  #pumpReason: "mmio" | "completion" | "timer" | null = null;
  /** A submission queue went idle after a burst and keeps its event index for a timer tick. */
  #holding = false;
  #scheduled = false;
  #running = false;
  #again = false;
  #poll: { cancel(): void } | null = null;
  #pollMs = POLL_MIN_MS;
  #idle: Promise<void> = Promise.resolve();

  /** Zero-copy transfers in flight, with the lists whose pages the file I/O uses. */
  readonly #transfers = new Set<{ lists: readonly DmaSgList[]; done: Promise<unknown> }>();
  readonly #unsubscribe: () => void;
  /** Guest data pages' lists kept across commands (page-lists.ts). */
  readonly pages: PageLists;

  constructor(ctx: PciDeviceContext, ns: Namespace, opts: ControllerOptions) {
    this.ctx = ctx;
    this.dma = ctx.dma;
    // An unmap waits for the file I/O still using its pages (a pool thread writes into them).
    this.pages = new PageLists(ctx.dma);
    this.#unsubscribe = ctx.dma.onUnmap((ev) => {
      this.pages.drop(ev.handles);
      const waits: Promise<unknown>[] = [];
      for (const t of this.#transfers) if (t.lists.some((l) => ev.handles.includes(l))) waits.push(t.done);
      return waits.length > 0 ? Promise.allSettled(waits).then(() => undefined) : undefined;
    });
    this.ns = ns;
    this.opts = opts;
    const mqes = BigInt(opts.maxQueueEntries - 1);
    const to = 20n; // CAP.TO: 10 s in 500 ms units
    this.cap = mqes | (1n << 16n) /* CQR */ | (to << 24n) | (BigInt(opts.dstrd) << 32n) | (1n << 37n); // CSS NVM
    // MPSMIN = MPSMAX = 0 (4 KiB).
  }

  get stride(): number {
    return 4 << this.opts.dstrd;
  }

  get enabled(): boolean {
    return (this.csts & Csts.RDY) !== 0;
  }

  // ---- registers -----------------------------------------------------------------------------

  readRegister(offset: number, size: number): number | bigint {
    const v = this.#register64(offset & ~7);
    if (size === 8) return v;
    return Number(BigInt.asUintN(32, v >> BigInt((offset & 4) * 8)));
  }

  #register64(offset: number): bigint {
    const lohi = (lo: number, hi: number) => BigInt(lo >>> 0) | (BigInt(hi >>> 0) << 32n);
    switch (offset) {
      case Reg.CAP:
        return this.cap;
      case Reg.VS: // VS | INTMS
        return lohi(NVME_VERSION, this.intms);
      case Reg.INTMC: // INTMC | CC
        return lohi(this.intms, this.cc);
      case 0x18: // reserved | CSTS
        return lohi(0, this.csts);
      case 0x20: // NSSR | AQA
        return lohi(0, this.aqa);
      case Reg.ASQ:
        return this.asq;
      case Reg.ACQ:
        return this.acq;
      default:
        return 0n; // CMBLOC, CMBSZ, BPINFO…, doorbells: read as zero
    }
  }

  writeRegister(offset: number, data: Uint8Array): void {
    const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    if (data.length === 8) {
      this.writeRegister(offset, data.subarray(0, 4));
      this.writeRegister(offset + 4, data.subarray(4));
      return;
    }
    const value = v.getUint32(0, true);
    if (offset >= Reg.DOORBELLS) {
      this.#doorbell(offset - Reg.DOORBELLS, value);
      return;
    }
    switch (offset) {
      case Reg.INTMS:
        this.intms = (this.intms | value) >>> 0;
        this.#syncLevels();
        return;
      case Reg.INTMC:
        this.intms = (this.intms & ~value) >>> 0;
        this.#syncLevels();
        return;
      case Reg.CC:
        this.#writeCc(value);
        return;
      case Reg.AQA:
        this.aqa = value & 0x0fff_0fff;
        return;
      case Reg.ASQ:
        this.asq = (this.asq & ~0xffff_ffffn) | BigInt(value & ~0xfff);
        return;
      case Reg.ASQ + 4:
        this.asq = (this.asq & 0xffff_ffffn) | (BigInt(value) << 32n);
        return;
      case Reg.ACQ:
        this.acq = (this.acq & ~0xffff_ffffn) | BigInt(value & ~0xfff);
        return;
      case Reg.ACQ + 4:
        this.acq = (this.acq & 0xffff_ffffn) | (BigInt(value) << 32n);
        return;
      default:
        return; // read-only or reserved: ignored
    }
  }

  #writeCc(value: number): void {
    const was = this.cc;
    this.cc = value >>> 0;
    const en = (value & Cc.EN) !== 0;
    if (en && !(was & Cc.EN)) this.#enable();
    else if (!en && was & Cc.EN) this.#disable();
    const shn = (value >> Cc.SHN_SHIFT) & 3;
    const wasShn = (was >> Cc.SHN_SHIFT) & 3;
    if (shn !== 0 && wasShn === 0) this.#shutdown();
    else if (shn === 0 && wasShn !== 0) this.csts &= ~Csts.SHST_MASK;
  }

  #enable(): void {
    const asqs = (this.aqa & 0xfff) + 1;
    const acqs = ((this.aqa >> 16) & 0xfff) + 1;
    const mps = (this.cc >> Cc.MPS_SHIFT) & 0xf;
    const css = (this.cc >> Cc.CSS_SHIFT) & 7;
    const bad =
      asqs < 2 ||
      acqs < 2 ||
      asqs > this.opts.maxQueueEntries ||
      acqs > this.opts.maxQueueEntries ||
      mps !== 0 ||
      css !== 0 ||
      this.asq === 0n ||
      this.acq === 0n;
    if (bad) {
      this.ctx.log.warn(
        `nvme: enable refused (AQA 0x${this.aqa.toString(16)}, CC 0x${this.cc.toString(16)})`,
      );
      this.csts |= Csts.CFS;
      return;
    }
    this.csts &= ~Csts.SHST_MASK;
    this.cqs.set(0, new CompletionQueue(this.dma, 0, this.acq, acqs, 0, true));
    this.sqs.set(0, new SubmissionQueue(this.dma, 0, this.asq, asqs, 0));
    this.cqs.get(0)!.sqs.add(0);
    this.csts |= Csts.RDY;
    this.ctx.log.debug(`nvme: enabled, admin queues ${asqs}/${acqs}`);
  }

  #disable(): void {
    const settled = this.#resetQueues();
    const gen = this.generation;
    this.#idle = settled.then(() => {
      if (this.generation === gen) this.csts &= ~(Csts.RDY | Csts.CFS);
    });
  }

  /** Controller reset of everything queue-related; resolves when the old commands settled. */
  #resetQueues(): Promise<void> {
    this.generation++;
    const inflight: Promise<void>[] = [];
    for (const sq of this.sqs.values()) {
      sq.deleted = true;
      inflight.push(...sq.inflight);
      sq.ring.release();
    }
    for (const cq of this.cqs.values()) {
      cq.ring.release();
      if (cq.ien) this.ctx.irq.lower(this.#vector(cq.iv));
    }
    this.sqs.clear();
    this.cqs.clear();
    this.aers.length = 0;
    this.#releaseDbbuf();
    this.pages.clear();
    this.#poll?.cancel();
    this.#poll = null;
    this.features = defaultFeatures();
    return Promise.allSettled(inflight).then(() => undefined);
  }

  #shutdown(): void {
    this.csts = (this.csts & ~Csts.SHST_MASK) | Csts.SHST_OCCURRING;
    const gen = this.generation;
    this.ns
      .flush()
      .catch((err) => this.ctx.log.error(`nvme: flush at shutdown failed: ${(err as Error).message}`))
      .finally(() => {
        if (this.generation === gen && (this.csts & Csts.SHST_MASK) === Csts.SHST_OCCURRING)
          this.csts = (this.csts & ~Csts.SHST_MASK) | Csts.SHST_COMPLETE;
      });
  }

  /** Full reset (FLR, DEVICE_RESET, disconnect): queues and registers. */
  async reset(): Promise<void> {
    const settled = this.#resetQueues();
    this.cc = 0;
    this.csts = 0;
    this.aqa = 0;
    this.asq = 0n;
    this.acq = 0n;
    this.intms = 0;
    await settled;
    await this.#idle;
  }

  // ---- doorbells and the pump ----------------------------------------------------------------

  #doorbell(offset: number, value: number): void {
    this.counters.mmioDoorbells++;
    if (offset % this.stride !== 0 || !this.enabled) return;
    const n = offset / this.stride;
    const qid = n >> 1;
    value &= 0xffff;
    if ((n & 1) === 0) {
      const sq = this.sqs.get(qid);
      if (!sq || value >= sq.size) return; // an invalid doorbell write: ignored
      sq.tail = value;
    } else {
      const cq = this.cqs.get(qid);
      if (!cq || value >= cq.size) return;
      this.#cqHead(cq, value);
    }
    this.kick("mmio");
  }

  #cqHead(cq: CompletionQueue, head: number): void {
    cq.head = head;
    if (!cq.outstanding && cq.ien) this.#syncVector(cq.iv);
    if (cq.pending.length > 0) void this.#flushCq(cq);
  }

  /** Schedule the pump (never runs it inside the caller). */
  kick(reason: "mmio" | "completion" | "timer" | null = null): void {
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
    if (this.#running) return;
    this.#running = true;
    let worked = false;
    this.#holding = false;
    try {
      while (this.#again) {
        this.#again = false;
        this.#pumpReason = this.#kickReason;
        this.#kickReason = null;
        this.ns.beginPass();
        for (const sq of [...this.sqs.values()]) {
          if (await this.#drain(sq)) worked = true;
        }
      }
    } finally {
      this.#running = false;
    }
    if (this.dbbuf) this.#schedulePoll(worked || this.#holding);
  }

  #schedulePoll(active: boolean): void {
    this.#poll?.cancel();
    this.#pollMs = active ? POLL_MIN_MS : Math.min(this.#pollMs * 2, POLL_MAX_MS);
    const gen = this.generation;
    this.#poll = this.ctx.clock.setTimeout(() => {
      this.#poll = null;
      if (gen !== this.generation || !this.dbbuf) return;
      this.counters.shadowPolls++;
      this.kick("timer");
    }, this.#pollMs);
  }

  /** Fetch and start every command up to the tail; true when any was fetched. */
  async #drain(sq: SubmissionQueue): Promise<boolean> {
    const gen = this.generation;
    let worked = false;
    for (;;) {
      if (sq.deleted || gen !== this.generation) return worked;
      if (this.dbbuf && sq.id > 0) {
        const r = this.#shadowRead(sq.id * 2);
        const shadow = r instanceof Promise ? await r : r;
        if (shadow === null || gen !== this.generation || sq.deleted) return worked;
        if (shadow < sq.size) sq.tail = shadow;
      }
      if (sq.empty) {
        if (!this.dbbuf || sq.id === 0) return worked;
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
          this.opts.holdPoll &&
          (sq.lastBatch >= HOLD_MIN_BURST || this.#unconsumed(sq) >= HOLD_MIN_BURST) &&
          (worked || this.#pumpReason !== "timer")
        ) {
          this.#holding = true;
          return worked;
        }
        sq.published = sq.tail;
        const w = this.#shadowWrite(sq.id * 2, sq.tail);
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
          this.#fatal(`fetching from SQ ${sq.id}`, err);
          return worked;
        }
        if (sq.deleted || gen !== this.generation) return worked;
        sq.lastBatch = count;
        for (let i = 0; i < count; i++) {
          sq.head = (sq.head + 1) % sq.size;
          const sqe = batch.subarray(i * SQE_SIZE, (i + 1) * SQE_SIZE);
          worked = true;
          this.counters.commands++;
          this.#found();
          if (sq.id === 0) await this.#run(sq, sqe);
          else void this.#run(sq, sqe);
        }
      }
      if (!this.dbbuf || sq.id === 0) return worked;
    }
  }

  /** Completions posted on the SQ's CQ that the host has not consumed (its shadow head), or 0
   * when the shadow is not mapped. */
  #unconsumed(sq: SubmissionQueue): number {
    const cq = this.cqs.get(sq.cqid);
    if (!cq) return 0;
    const head = this.#shadowRead(cq.id * 2 + 1);
    if (typeof head !== "number" || head >= cq.size) return 0;
    return (cq.tail - head + cq.size) % cq.size;
  }

  #found(): void {
    const c = this.counters;
    const r = this.#pumpReason;
    if (r === "mmio") c.foundByMmio++;
    else if (r === "completion") c.foundByCompletion++;
    else if (r === "timer") c.foundByTimer++;
    if (this.#lastIrq > 0) {
      c.turnaroundUs += (performance.now() - this.#lastIrq) * 1000;
      c.turnarounds++;
      this.#lastIrq = 0;
    }
  }

  #run(sq: SubmissionQueue, sqe: Uint8Array): Promise<void> {
    const gen = this.generation;
    const t0 = performance.now();
    const cid = sqe[2]! | (sqe[3]! << 8);
    const p = (async () => {
      let r: CommandResult | null;
      try {
        const flags = sqe[1]!;
        if ((flags & 3) !== 0) throw new NvmeStatus(Status.INVALID_FIELD, "fused commands");
        r = sq.id === 0 ? await handleAdmin(this, sqe) : await handleIo(this, sqe);
      } catch (err) {
        r = { status: this.statusOf(err) };
      }
      this.counters.serviceUs += (performance.now() - t0) * 1000;
      if (r && gen === this.generation && !sq.deleted) this.complete(sq, cid, r);
    })();
    sq.inflight.add(p);
    void p.finally(() => sq.inflight.delete(p));
    return p;
  }

  /** The status a thrown error stands for: NvmeStatus as is, DMA faults as Data Transfer Error. */
  statusOf(err: unknown): number {
    if (err instanceof NvmeStatus) return err.status;
    if (err instanceof DmaFault) {
      this.counters.dmaErrors++;
      return Status.DATA_TRANSFER_ERROR;
    }
    this.ctx.log.error(`nvme: command failed: ${(err as Error)?.stack ?? String(err)}`);
    return Status.INTERNAL_ERROR;
  }

  #fatal(what: string, err: unknown): void {
    this.ctx.log.warn(`nvme: controller fatal status: ${what}: ${(err as Error)?.message ?? err}`);
    this.csts |= Csts.CFS;
  }

  // ---- completions and interrupts ------------------------------------------------------------

  complete(sq: SubmissionQueue, cid: number, r: CommandResult): void {
    const cq = this.cqs.get(sq.cqid);
    if (!cq) return;
    cq.pending.push({ dw0: r.dw0 ?? 0, sqid: sq.id, cid, status: r.status, sq, t: performance.now() });
    if (cq.flushScheduled) return;
    // Post in the check phase: every command that completed in this event-loop pass (all the
    // pool callbacks of one poll phase) goes out together under one interrupt, which covers
    // every entry posted before it.
    cq.flushScheduled = true;
    setImmediate(() => {
      cq.flushScheduled = false;
      if (this.cqs.get(cq.id) === cq) void this.#flushCq(cq);
    });
  }

  /** Post what fits of `pending`, then interrupt. Posting is synchronous per entry (the tail
   * moves before any await), so concurrent flushes keep the order. */
  async #flushCq(cq: CompletionQueue): Promise<void> {
    const gen = this.generation;
    const writes: Promise<void>[] = [];
    let posted = 0;
    while (cq.pending.length > 0) {
      if (cq.full && this.dbbuf && cq.id > 0) {
        const head = await this.#shadowRead(cq.id * 2 + 1);
        if (gen !== this.generation) return;
        if (head !== null && head < cq.size) cq.head = head;
        if (cq.full) await this.#shadowWrite(cq.id * 2 + 1, cq.head);
      }
      if (cq.full) break;
      const c = cq.pending.shift()!;
      this.counters.postUs += (performance.now() - c.t) * 1000;
      const w = cq.write(c);
      if (w) writes.push(w);
      posted++;
    }
    if (posted === 0) return;
    if (writes.length > 0) {
      try {
        await Promise.all(writes);
      } catch (err) {
        this.#fatal(`posting to CQ ${cq.id}`, err);
        return;
      }
    }
    if (gen !== this.generation || this.cqs.get(cq.id) !== cq) return;
    if (cq.ien) this.#signal(cq.iv);
    // With shadow doorbells the host does not ring while we are busy: look at the tails again.
    if (this.dbbuf) this.kick("completion");
  }

  /** The vector `raise` takes: MSI-X/INTx use the CQ's vector; beyond the table, the last. */
  #vector(iv: number): number {
    return Math.min(iv, this.opts.vectors - 1);
  }

  #signal(iv: number): void {
    const mode = this.ctx.irq.mode;
    if (mode !== "msix" && this.intms & (1 << iv)) return; // masked; INTMC raises it later
    this.counters.interrupts++;
    this.#lastIrq = performance.now();
    this.ctx.irq.raise(this.#vector(iv));
  }

  /** INTx (a level): asserted while any unmasked vector has completions the host has not consumed. */
  #syncVector(iv: number): void {
    if (this.ctx.irq.mode === "msix") return;
    for (const cq of this.cqs.values()) {
      if (cq.iv === iv && cq.ien && cq.outstanding && !(this.intms & (1 << iv))) return;
    }
    this.ctx.irq.lower(this.#vector(iv));
  }

  #syncLevels(): void {
    if (this.ctx.irq.mode === "msix") return;
    const ivs = new Set([...this.cqs.values()].filter((c) => c.ien).map((c) => c.iv));
    for (const iv of ivs) {
      const pending = [...this.cqs.values()].some((c) => c.iv === iv && c.ien && c.outstanding);
      if (pending && !(this.intms & (1 << iv))) this.#signal(iv);
      else this.#syncVector(iv);
    }
  }

  // ---- shadow doorbells ----------------------------------------------------------------------

  /** A shadow doorbell (tail or head): synchronous through the page's view when it is mapped,
   * else a DMA read; null after a fault (the controller is then fatal). */
  #shadowRead(slot: number): number | null | Promise<number | null> {
    const b = this.dbbuf;
    if (!b) return null;
    const off = slot * this.stride;
    const view = b.dbsView?.bytes;
    if (view && view.length >= off + 4)
      return (view[off]! | (view[off + 1]! << 8) | (view[off + 2]! << 16) | (view[off + 3]! << 24)) >>> 0;
    return this.dma.read(b.dbs + BigInt(off), 4).then(
      (d) => new DataView(d.buffer, d.byteOffset, 4).getUint32(0, true),
      (err) => {
        this.#fatal("reading the shadow doorbell", err);
        return null;
      },
    );
  }

  /** Publish an event index: synchronous through the view when mapped, else a DMA write. */
  #shadowWrite(slot: number, value: number): void | Promise<void> {
    const b = this.dbbuf;
    if (!b) return;
    const off = slot * this.stride;
    const view = b.eisView?.bytes;
    if (view && view.length >= off + 4) {
      view[off] = value & 0xff;
      view[off + 1] = (value >> 8) & 0xff;
      view[off + 2] = (value >> 16) & 0xff;
      view[off + 3] = (value >>> 24) & 0xff;
      return;
    }
    const d = new Uint8Array(4);
    new DataView(d.buffer).setUint32(0, value, true);
    return this.dma.write(b.eis + BigInt(off), d).catch((err) => this.#fatal("writing the event index", err));
  }

  /** Doorbell Buffer Config: take the buffers and seed them with the current indices. */
  async configureDbbuf(dbs: bigint, eis: bigint): Promise<void> {
    const gen = this.generation;
    const slots = (this.opts.maxIoQueues + 1) * 2;
    const page = new Uint8Array(Math.min(PAGE_SIZE, slots * this.stride));
    await this.dma.read(dbs, page.length);
    await this.dma.read(eis, page.length);
    if (gen !== this.generation) return;
    this.#releaseDbbuf();
    // Zero-copy views of the two pages when they are fd-backed: the shadow is read at every pump
    // pass, so a synchronous read saves a DMA request (and its promise) each time.
    const view = (iova: bigint, access: "read" | "rw"): DmaView | null => {
      if (!this.dma.mappable(iova, page.length)) return null;
      try {
        return this.dma.view(iova, page.length, access);
      } catch {
        return null;
      }
    };
    this.dbbuf = { dbs, eis, dbsView: view(dbs, "read"), eisView: view(eis, "rw") };
    for (const sq of this.sqs.values()) {
      if (sq.id === 0) continue;
      sq.published = sq.tail;
      await this.#shadowWrite(sq.id * 2, sq.tail);
    }
    this.#schedulePoll(true);
  }

  /** Run file I/O that uses the lists' pages; the lists are released when it settles. */
  async transfer(lists: readonly DmaSgList[], io: Promise<void>): Promise<void> {
    const t = { lists, done: io };
    this.#transfers.add(t);
    try {
      await io;
    } finally {
      this.#transfers.delete(t);
      for (const l of lists) l.release();
    }
  }

  #releaseDbbuf(): void {
    this.dbbuf?.dbsView?.release();
    this.dbbuf?.eisView?.release();
    this.dbbuf = null;
  }

  dispose(): void {
    this.pages.clear();
    this.#unsubscribe();
    this.#releaseDbbuf();
    this.generation++;
    this.#poll?.cancel();
    this.#poll = null;
    for (const q of [...this.sqs.values(), ...this.cqs.values()]) q.ring.release();
  }
}
