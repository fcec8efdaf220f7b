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
// Commands are fetched and run by the pump (pump.ts); completions are posted here, in batches,
// and the CQ's vector raised once per batch (interrupts.ts); shadow doorbells are shadow.ts.
import { type Clock, type DmaApi, DmaFault, type DmaSgList, type PciDeviceContext } from "../../src/index.ts";
import { CqInterrupts } from "./interrupts.ts";
import type { Namespace } from "./namespace.ts";
import { PageLists } from "./page-lists.ts";
import { CommandPump, type KickReason } from "./pump.ts";
import { CompletionQueue, SubmissionQueue } from "./queues.ts";
import { ShadowDoorbells } from "./shadow.ts";
import { Cc, Csts, NVME_VERSION, NvmeStatus, PAGE_SIZE, Reg, Status } from "./spec.ts";

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
  /** Moves on at every reset: work of an older generation posts nothing. */
  generation = 0;
  readonly sqs = new Map<number, SubmissionQueue>();
  readonly cqs = new Map<number, CompletionQueue>();
  features: Features = defaultFeatures();
  /** Held Asynchronous Event Requests (command ids on the admin queue). */
  readonly aers: number[] = [];
  /** Shadow doorbell and event index buffers (Doorbell Buffer Config), or null. */
  dbbuf: ShadowDoorbells | null = null;
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
  #idle: Promise<void> = Promise.resolve();

  /** Zero-copy transfers in flight, with the lists whose pages the file I/O uses. */
  readonly #transfers = new Set<{ lists: readonly DmaSgList[]; done: Promise<unknown> }>();
  readonly #unsubscribe: () => void;
  /** Guest data pages' lists kept across commands (page-lists.ts). */
  readonly pages: PageLists;
  /** Completion interrupts and the INTMS/INTMC mask (interrupts.ts). */
  readonly irqs: CqInterrupts;
  /** Command fetch (pump.ts). */
  readonly pump: CommandPump;
  readonly #clock: Clock;

  constructor(ctx: PciDeviceContext, ns: Namespace, opts: ControllerOptions) {
    this.ctx = ctx;
    this.dma = ctx.dma;
    this.#clock = ctx.clock;
    this.irqs = new CqInterrupts(ctx.irq, opts.vectors, ctx.clock, this.counters);
    this.pump = new CommandPump(this);
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
        return lohi(NVME_VERSION, this.irqs.mask);
      case Reg.INTMC: // INTMC | CC
        return lohi(this.irqs.mask, this.cc);
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
        this.irqs.mask = (this.irqs.mask | value) >>> 0;
        this.irqs.syncLevels(this.cqs);
        return;
      case Reg.INTMC:
        this.irqs.mask = (this.irqs.mask & ~value) >>> 0;
        this.irqs.syncLevels(this.cqs);
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
      if (cq.ien) this.irqs.lower(cq.iv);
    }
    this.sqs.clear();
    this.cqs.clear();
    this.aers.length = 0;
    this.#releaseDbbuf();
    this.pages.clear();
    this.pump.cancelPoll();
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
    this.irqs.mask = 0;
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
    if (!cq.outstanding && cq.ien) this.irqs.syncVector(cq.iv, this.cqs.values());
    if (cq.pending.length > 0) void this.#flushCq(cq);
  }

  /** Schedule the pump (never runs it inside the caller). */
  kick(reason: KickReason = null): void {
    this.pump.kick(reason);
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

  /** The controller hit an error it cannot report in a completion: CSTS.CFS. */
  fatal(what: string, err: unknown): void {
    this.ctx.log.warn(`nvme: controller fatal status: ${what}: ${(err as Error)?.message ?? err}`);
    this.csts |= Csts.CFS;
  }

  // ---- completions and interrupts ------------------------------------------------------------

  complete(sq: SubmissionQueue, cid: number, r: CommandResult): void {
    const cq = this.cqs.get(sq.cqid);
    if (!cq) return;
    cq.pending.push({ dw0: r.dw0 ?? 0, sqid: sq.id, cid, status: r.status, sq, t: this.#clock.now() });
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
      this.counters.postUs += (this.#clock.now() - c.t) * 1000;
      const w = cq.write(c);
      if (w) writes.push(w);
      posted++;
    }
    if (posted === 0) return;
    if (writes.length > 0) {
      try {
        await Promise.all(writes);
      } catch (err) {
        this.fatal(`posting to CQ ${cq.id}`, err);
        return;
      }
    }
    if (gen !== this.generation || this.cqs.get(cq.id) !== cq) return;
    if (cq.ien) this.irqs.signal(cq.iv);
    // With shadow doorbells the host does not ring while we are busy: look at the tails again.
    if (this.dbbuf) this.kick("completion");
  }

  // ---- shadow doorbells ----------------------------------------------------------------------

  /** Doorbell Buffer Config: take the buffers and seed them with the current indices. Rejects
   * with the DmaFault of a buffer the device may not reach. */
  async configureDbbuf(dbs: bigint, eis: bigint): Promise<void> {
    const gen = this.generation;
    const slots = (this.opts.maxIoQueues + 1) * 2;
    const bytes = Math.min(PAGE_SIZE, slots * this.stride);
    const shadow = await ShadowDoorbells.open(this.dma, dbs, eis, bytes, this.stride, (what, err) =>
      this.fatal(what, err),
    );
    if (gen !== this.generation) {
      shadow.release();
      return;
    }
    this.#releaseDbbuf();
    this.dbbuf = shadow;
    for (const sq of this.sqs.values()) {
      if (sq.id === 0) continue;
      sq.published = sq.tail;
      await this.#shadowWrite(sq.id * 2, sq.tail);
    }
    this.pump.schedulePoll(true);
  }

  #shadowRead(slot: number): number | null | Promise<number | null> {
    return this.dbbuf ? this.dbbuf.read(slot) : null;
  }

  #shadowWrite(slot: number, value: number): void | Promise<void> {
    return this.dbbuf?.write(slot, value);
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
    this.dbbuf?.release();
    this.dbbuf = null;
  }

  dispose(): void {
    this.pages.clear();
    this.#unsubscribe();
    this.#releaseDbbuf();
    this.generation++;
    this.pump.cancelPoll();
    for (const q of [...this.sqs.values(), ...this.cqs.values()]) q.ring.release();
  }
}
