// A small NVMe host driver over the TypeScript client, for the nvme device tests and the
// benchmark: it maps one memfd of client memory, lays the admin and I/O queues out in it, enables
// the controller, and submits commands, reaping completions by polling the phase tag (the server
// runs in this process, so polling yields to it with setImmediate). Optionally it uses shadow
// doorbells with event indices the way a host driver does.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Test } from "tap";
import { type NvmeBehaviour, nvme } from "../../devices/nvme/index.ts";
import {
  type ClientMemory,
  createMemoryPair,
  type DeviceFactory,
  MemorySink,
  PciCommand,
  PciDevice,
  PciHeader,
  PciRegion,
  SinkLogger,
  serveConnection,
  VfioUserClient,
} from "../../src/index.ts";

export const MEM_IOVA = 0x10_0000n;
export const MEM_SIZE = 8 << 20;
/** Offsets in client memory. */
export const Layout = {
  ASQ: 0x0000,
  ACQ: 0x1000,
  DBS: 0x2000,
  EIS: 0x3000,
  QUEUES: 0x10000, // I/O queue n: SQ at QUEUES + n*0x10000, CQ 0x8000 above
  DATA: 0x20_0000, // data buffers from here
} as const;

export interface Cqe {
  dw0: number;
  sqHead: number;
  sqid: number;
  cid: number;
  /** SCT << 8 | SC */
  status: number;
  dnr: boolean;
}

export interface Sqe {
  opc: number;
  nsid?: number;
  psdt?: number;
  prp1?: bigint;
  prp2?: bigint;
  /** The 16 DPTR bytes, instead of prp1/prp2 (SGL1). */
  dptr?: Uint8Array;
  cdw10?: number;
  cdw11?: number;
  cdw12?: number;
  cdw13?: number;
  fuse?: number;
}

class QueuePair {
  sqTail = 0;
  cqHead = 0;
  phase = 1;
  readonly waiting = new Map<number, (c: Cqe) => void>();
  constructor(
    readonly id: number,
    readonly sqOff: number,
    readonly sqSize: number,
    readonly cqOff: number,
    readonly cqSize: number,
  ) {}
}

export class NvmeHost {
  readonly dir: string;
  readonly disk: string;
  readonly logs = new MemorySink();
  client!: VfioUserClient;
  device!: PciDevice<NvmeBehaviour>;
  mem!: ClientMemory;
  #ended!: Promise<void>;
  readonly queues = new Map<number, QueuePair>();
  #cid = 0;
  #reaping = false;
  stride = 4;
  /** Shadow doorbells in use (after dbbuf()). */
  shadow = false;
  mmioDoorbells = 0;

  constructor(readonly options: Record<string, string> = {}) {
    this.dir = mkdtempSync(path.join(tmpdir(), "vfu-nvme-test-"));
    this.disk = options.disk ?? path.join(this.dir, "disk.img");
  }

  /** Start, enable, and stop + clean up at the test's teardown (the tests' common preamble). */
  static async ready(t: Test, options: Record<string, string> = {}): Promise<NvmeHost> {
    const h = await NvmeHost.start(options);
    t.teardown(async () => {
      if (!h.client.closed) await h.stop();
      h.cleanup();
    });
    await h.enable();
    return h;
  }

  static async start(options: Record<string, string> = {}): Promise<NvmeHost> {
    const h = new NvmeHost(options);
    await h.connect();
    return h;
  }

  async connect(): Promise<void> {
    const log = new SinkLogger(this.logs, "debug");
    const make: DeviceFactory = (dma) => {
      this.device = new PciDevice(nvme, {
        dma,
        log,
        options: { size: "16M", ...this.options, disk: this.disk },
      });
      return this.device;
    };
    const [a, b] = createMemoryPair();
    const session = serveConnection(b, make, { log });
    this.#ended = session.ended;
    this.client = await VfioUserClient.over(a);
    await this.client.regionWrite(
      PciRegion.CONFIG,
      PciHeader.COMMAND,
      Uint8Array.of(PciCommand.MEMORY | PciCommand.MASTER, 0),
    );
    this.mem = await this.client.mapMemory(MEM_IOVA, MEM_SIZE);
    this.queues.clear();
  }

  /** Close the client, wait for the session to end, and dispose the device (closes the file). */
  async stop(): Promise<void> {
    this.client.close();
    await this.#ended;
    this.device.dispose();
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  iova(offset: number): bigint {
    return MEM_IOVA + BigInt(offset);
  }

  get view(): DataView {
    return new DataView(this.mem.bytes.buffer, this.mem.bytes.byteOffset, this.mem.bytes.byteLength);
  }

  r32(off: number): Promise<number> {
    return this.client.regionRead32(0, off);
  }

  async r64(off: number): Promise<bigint> {
    const d = await this.client.regionRead(0, off, 8);
    return new DataView(d.buffer, d.byteOffset, 8).getBigUint64(0, true);
  }

  w32(off: number, v: number, posted = false): Promise<void> {
    return this.client.regionWrite32(0, off, v, { posted });
  }

  async w64(off: number, v: bigint): Promise<void> {
    const d = new Uint8Array(8);
    new DataView(d.buffer).setBigUint64(0, v, true);
    await this.client.regionWrite(0, off, d);
  }

  async waitCsts(mask: number, value: number, ms = 2000): Promise<number> {
    const end = performance.now() + ms;
    for (;;) {
      const v = await this.r32(0x1c);
      if ((v & mask) === value) return v;
      if (performance.now() > end)
        throw new Error(
          `CSTS 0x${v.toString(16)}: bit(s) 0x${mask.toString(16)} never became 0x${value.toString(16)}`,
        );
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /** CC.EN=0, admin queues of `size` entries, CC.EN=1, wait for RDY. */
  async enable(size = 32): Promise<void> {
    await this.w32(0x14, 0);
    await this.waitCsts(1, 0);
    this.mem.bytes.fill(0, Layout.ASQ, Layout.ACQ + 0x1000);
    await this.w32(0x24, (size - 1) | ((size - 1) << 16));
    await this.w64(0x28, this.iova(Layout.ASQ));
    await this.w64(0x30, this.iova(Layout.ACQ));
    await this.w32(0x14, 1 | (6 << 16) | (4 << 20));
    await this.waitCsts(1, 1);
    this.stride = 4 << Number(((await this.r64(0)) >> 32n) & 0xfn);
    this.queues.clear();
    this.shadow = false;
    this.queues.set(0, new QueuePair(0, Layout.ASQ, size, Layout.ACQ, size));
  }

  encode(s: Sqe, cid: number): Uint8Array {
    const e = new Uint8Array(64);
    const v = new DataView(e.buffer);
    e[0] = s.opc;
    e[1] = ((s.psdt ?? 0) << 6) | (s.fuse ?? 0);
    v.setUint16(2, cid, true);
    v.setUint32(4, s.nsid ?? 0, true);
    if (s.dptr) e.set(s.dptr, 24);
    else {
      v.setBigUint64(24, s.prp1 ?? 0n, true);
      v.setBigUint64(32, s.prp2 ?? 0n, true);
    }
    v.setUint32(40, s.cdw10 ?? 0, true);
    v.setUint32(44, s.cdw11 ?? 0, true);
    v.setUint32(48, s.cdw12 ?? 0, true);
    v.setUint32(52, s.cdw13 ?? 0, true);
    return e;
  }

  /** Submit without waiting: returns the completion's promise. */
  submit(qid: number, s: Sqe): Promise<Cqe> {
    const q = this.queues.get(qid);
    if (!q) throw new Error(`no queue ${qid}`);
    if (q.waiting.size >= q.sqSize - 1) throw new Error(`queue ${qid} is full`);
    const cid = this.#cid++ & 0xffff;
    this.mem.bytes.set(this.encode(s, cid), q.sqOff + q.sqTail * 64);
    const p = new Promise<Cqe>((resolve) => q.waiting.set(cid, resolve));
    const old = q.sqTail;
    q.sqTail = (q.sqTail + 1) % q.sqSize;
    this.#ring(q.id * 2, old, q.sqTail);
    this.#reap();
    return p;
  }

  command(qid: number, s: Sqe): Promise<Cqe> {
    return this.submit(qid, s);
  }

  admin(s: Sqe): Promise<Cqe> {
    return this.submit(0, s);
  }

  /** A doorbell: the MMIO write, or with shadow doorbells the shadow and (if the event index asks) MMIO. */
  #ring(slot: number, old: number, value: number): void {
    if (this.shadow && slot >= 2) {
      this.view.setUint32(Layout.DBS + slot * this.stride, value, true);
      const ev = this.view.getUint32(Layout.EIS + slot * this.stride, true);
      if (((value - ev - 1) & 0xffff) >= ((value - old) & 0xffff)) return;
    }
    this.mmioDoorbells++;
    void this.w32(0x1000 + slot * this.stride, value, true);
  }

  #reap(): void {
    if (this.#reaping) return;
    this.#reaping = true;
    const loop = () => {
      if (this.client.closed) {
        this.#reaping = false;
        return;
      }
      let waiting = 0;
      for (const q of this.queues.values()) {
        let moved = false;
        const old = q.cqHead;
        for (;;) {
          const off = q.cqOff + q.cqHead * 16;
          const st = this.view.getUint16(off + 14, true);
          if ((st & 1) !== q.phase) break;
          const c: Cqe = {
            dw0: this.view.getUint32(off, true),
            sqHead: this.view.getUint16(off + 8, true),
            sqid: this.view.getUint16(off + 10, true),
            cid: this.view.getUint16(off + 12, true),
            status: ((st >> 1) & 0xff) | (((st >> 9) & 7) << 8),
            dnr: (st & 0x8000) !== 0,
          };
          q.cqHead = (q.cqHead + 1) % q.cqSize;
          if (q.cqHead === 0) q.phase ^= 1;
          moved = true;
          const w = q.waiting.get(c.cid);
          q.waiting.delete(c.cid);
          w?.(c);
        }
        if (moved) this.#ring(q.id * 2 + 1, old, q.cqHead);
        waiting += q.waiting.size;
      }
      if (waiting > 0) setImmediate(loop);
      else this.#reaping = false;
    };
    setImmediate(loop);
  }

  /** Forget waiters (after a reset the device posts nothing for them). */
  abandon(): void {
    for (const q of this.queues.values()) q.waiting.clear();
  }

  async createQueues(qid: number, size = 64, opts: { iv?: number; ien?: boolean } = {}): Promise<void> {
    const sqOff = Layout.QUEUES + (qid - 1) * 0x10000;
    const cqOff = sqOff + 0x8000;
    this.mem.bytes.fill(0, sqOff, sqOff + 0x10000);
    const ien = opts.ien ?? false;
    let c = await this.admin({
      opc: 0x05,
      prp1: this.iova(cqOff),
      cdw10: qid | ((size - 1) << 16),
      cdw11: 1 | (ien ? 2 : 0) | ((opts.iv ?? 0) << 16),
    });
    if (c.status) throw new Error(`Create CQ ${qid}: status 0x${c.status.toString(16)}`);
    c = await this.admin({
      opc: 0x01,
      prp1: this.iova(sqOff),
      cdw10: qid | ((size - 1) << 16),
      cdw11: 1 | (qid << 16),
    });
    if (c.status) throw new Error(`Create SQ ${qid}: status 0x${c.status.toString(16)}`);
    this.queues.set(qid, new QueuePair(qid, sqOff, size, cqOff, size));
  }

  /** Doorbell Buffer Config with the DBS/EIS pages; the host then uses them for I/O queues. */
  async dbbuf(): Promise<Cqe> {
    this.mem.bytes.fill(0, Layout.DBS, Layout.EIS + 0x1000);
    for (const q of this.queues.values()) {
      this.view.setUint32(Layout.DBS + q.id * 2 * this.stride, q.sqTail, true);
      this.view.setUint32(Layout.DBS + (q.id * 2 + 1) * this.stride, q.cqHead, true);
    }
    const c = await this.admin({ opc: 0x7c, prp1: this.iova(Layout.DBS), prp2: this.iova(Layout.EIS) });
    if (c.status === 0) this.shadow = true;
    return c;
  }

  /** Read or write `nlb` blocks at `slba` through PRPs at `dataOff` (client memory offset). */
  rw(
    qid: number,
    write: boolean,
    slba: number,
    nlb: number,
    dataOff: number,
    extra: Partial<Sqe> = {},
  ): Promise<Cqe> {
    return this.submit(qid, {
      opc: write ? 0x01 : 0x02,
      nsid: 1,
      prp1: this.iova(dataOff),
      cdw10: slba >>> 0,
      cdw11: Math.floor(slba / 2 ** 32),
      cdw12: nlb - 1,
      ...extra,
    });
  }
}
