// edu: QEMU's educational PCI device (1234:11e8), written from its documentation (QEMU's
// docs/specs/edu.rst) so that code written for QEMU's own `-device edu` runs against it: an
// identification register, a liveness check, a factorial unit, an interrupt controller (INTx and
// a one-vector MSI capability) and a DMA engine between client memory and a 4 KiB buffer inside
// the device. The register table, and what this model adds to the original, is in README.md.
//
// Timing. The factorial and the DMA engine start from a register write and run after its reply
// (a clock tick later): a DMA must never be awaited inside the write handler, because QEMU serves
// our DMA_READ/DMA_WRITE on the thread that waits for that reply. The driver polls
// the busy bit (status bit 0, DMA command bit 0) or waits for the completion interrupt.
//
// DMA goes through ctx.dma only, so the IOMMU model decides: unmapped, read-only or
// message-backed memory, and Command.Bus Master clear (the PCI layer's gate). A transfer that
// cannot be done does not stop the device (QEMU's edu aborts the VM on a bad range): it ends with
// the DMA command's ERROR bit set and the reason in DMA_ERROR, and still raises its interrupt when
// asked to.
import { DmaFault, definePciDevice, Errno, type PciDeviceBehaviour, U64_MAX } from "../../src/index.ts";

export const EDU_IDS = {
  vendor: 0x1234,
  device: 0x11e8,
  subsystemVendor: 0x1af4, // QEMU's default subsystem IDs for its own devices
  subsystem: 0x1100,
  classCode: 0xff0000, //   "unassigned class", as the original
  revision: 0x10,
} as const;

export const EDU_BAR = 0;
export const EDU_BAR_SIZE = 0x10_0000;
/** 0xRRrr00ed: major 1, minor 0. */
export const EDU_ID = 0x0100_00ed;

export const Reg = {
  ID: 0x00, //          RO  0x010000ed
  LIVENESS: 0x04, //    RW  reads the bitwise inverse of the last value written
  FACTORIAL: 0x08, //   RW  write n: computes n! (mod 2^32) into this register
  STATUS: 0x20, //      RW  Status bits
  IRQ_STATUS: 0x24, //  RO  interrupt status (the values raised, ORed)
  IRQ_RAISE: 0x60, //   WO  OR the value into IRQ_STATUS and interrupt
  IRQ_ACK: 0x64, //     WO  clear these bits of IRQ_STATUS (INTx drops at 0)
  DMA_SRC: 0x80, //     RW  64-bit DMA source address
  DMA_DST: 0x88, //     RW  64-bit DMA destination address
  DMA_COUNT: 0x90, //   RW  64-bit transfer length in bytes
  DMA_CMD: 0x98, //     RW  DmaCmd bits
  DMA_ERROR: 0xa0, //   RO  why the last transfer failed (an errno, 0 = none). Not in the original.
} as const;

export const Status = {
  COMPUTING: 0x01, //   RO  the factorial is being computed
  IRQ_FACT: 0x80, //    RW  raise interrupt 0x1 when the factorial is done
} as const;

export const DmaCmd = {
  START: 0x01, //       RW  start the transfer; reads 1 until it has finished
  TO_RAM: 0x02, //      RW  direction: 0 client memory -> buffer, 1 buffer -> client memory
  IRQ: 0x04, //         RW  raise interrupt 0x100 when the transfer has finished
  ERROR: 0x08, //       RO  the last transfer failed (see DMA_ERROR). Not in the original.
} as const;

/** Interrupt status values the device itself raises. */
export const IrqCause = {
  FACTORIAL: 0x001,
  DMA: 0x100,
} as const;

/** The DMA buffer, as addressed by DMA_SRC/DMA_DST (and, in this model, BAR0 itself). */
export const DMA_BUFFER = 0x40000;
export const DMA_BUFFER_SIZE = 4096;
/** Default DMA mask: 28 address bits, as the original. */
export const DEFAULT_DMA_MASK = (1n << 28n) - 1n;

const ALL_ONES_64 = (1n << 64n) - 1n;

export interface EduStats {
  factorials: number;
  dmaTransfers: number;
  dmaErrors: number;
  irqsRaised: number;
}

/** What a served edu offers besides its registers: `new PciDevice(edu, …).behaviour`. */
export interface EduBehaviour extends PciDeviceBehaviour {
  /** The 4 KiB DMA buffer (live). */
  readonly buffer: Uint8Array;
  readonly irqStatus: number;
  readonly dmaMask: bigint;
  readonly stats: Readonly<EduStats>;
  /** Resolves once no factorial or DMA is pending (for tests). */
  idle(): Promise<void>;
}

export function factorial32(n: number): number {
  let r = 1;
  for (let i = 2; i <= n; i++) r = Math.imul(r, i) >>> 0;
  return r >>> 0;
}

function hex(v: number | bigint): string {
  return `0x${v.toString(16)}`;
}

export const edu = definePciDevice({
  name: "edu",
  summary: "QEMU's educational device: liveness, factorial, interrupts (INTx, MSI), a DMA engine",
  ids: EDU_IDS,
  bars: [{ index: EDU_BAR, kind: "memory", size: EDU_BAR_SIZE, accessSizes: [4, 8], name: "mmio" }],
  capabilities: { msi: { vectors: 1, is64: true } },
  interrupts: { intx: true },
  options: {
    "dma-mask": {
      kind: "integer",
      min: 1n,
      max: U64_MAX,
      hex: true,
      rule: { accepts: "a mask of low bits", test: (v: bigint) => (v & (v + 1n)) === 0n },
      default: DEFAULT_DMA_MASK,
      description: "DMA address mask: address bits above it are dropped, as on the original",
    },
  },
  create(ctx): EduBehaviour {
    const log = ctx.log;
    const dmaMask = ctx.options["dma-mask"];
    const buffer = new Uint8Array(DMA_BUFFER_SIZE);
    const stats: EduStats = { factorials: 0, dmaTransfers: 0, dmaErrors: 0, irqsRaised: 0 };
    const s = {
      liveness: 0,
      fact: 0,
      status: 0,
      irq: 0,
      src: 0n,
      dst: 0n,
      count: 0n,
      cmd: 0,
      error: 0,
    };
    // Work started by a register write runs a clock tick later (ctx.defer: a reset cancels what
    // has not started). A reset also bumps the generation, so a transfer already running when it
    // came changes nothing when it finishes.
    let generation = 0;
    const pending = new Set<Promise<void>>();
    const later = (fn: () => Promise<void> | void): void => {
      const { done } = ctx.defer(0, fn);
      pending.add(done);
      void done.then(() => pending.delete(done));
    };

    const raise = (value: number): void => {
      s.irq = (s.irq | value) >>> 0;
      if (s.irq !== 0) {
        stats.irqsRaised++;
        ctx.irq.raise(0);
      }
    };
    const ack = (value: number): void => {
      s.irq = (s.irq & ~value) >>> 0;
      if (s.irq === 0) ctx.irq.lower(0);
    };

    const startFactorial = (n: number): void => {
      s.fact = n;
      s.status |= Status.COMPUTING;
      later(() => {
        s.fact = factorial32(n);
        s.status &= ~Status.COMPUTING;
        stats.factorials++;
        if (s.status & Status.IRQ_FACT) raise(IrqCause.FACTORIAL);
      });
    };

    const fail = (errno: number, why: string): void => {
      s.error = errno;
      s.cmd |= DmaCmd.ERROR;
      stats.dmaErrors++;
      log.warn(`edu: DMA failed (errno ${errno}): ${why}`);
    };

    const runDma = async (): Promise<void> => {
      const gen = generation;
      const toRam = (s.cmd & DmaCmd.TO_RAM) !== 0;
      const count = s.count;
      const ram = (toRam ? s.dst : s.src) & dmaMask;
      const dev = toRam ? s.src : s.dst;
      const at = dev - BigInt(DMA_BUFFER);
      const what = toRam
        ? `buffer+${hex(at)} -> ${hex(ram)}, ${count} bytes`
        : `${hex(ram)} -> buffer+${hex(at)}, ${count} bytes`;
      if (count > BigInt(DMA_BUFFER_SIZE) || at < 0n || at + count > BigInt(DMA_BUFFER_SIZE)) {
        fail(Errno.EINVAL, `${what}: outside the ${DMA_BUFFER_SIZE}-byte buffer at ${hex(DMA_BUFFER)}`);
      } else if (count > 0n) {
        const off = Number(at);
        const n = Number(count);
        try {
          if (toRam) await ctx.dma.write(ram, buffer.slice(off, off + n));
          else {
            const data = await ctx.dma.read(ram, n);
            if (gen === generation) buffer.set(data, off);
          }
          if (gen !== generation) return;
          stats.dmaTransfers++;
          log.debug(`edu: DMA ${what}`);
        } catch (err) {
          if (!(err instanceof DmaFault)) throw err;
          if (gen !== generation) return;
          fail(err.errno, err.message);
        }
      } else {
        stats.dmaTransfers++;
      }
      s.cmd &= ~DmaCmd.START;
      if (s.cmd & DmaCmd.IRQ) raise(IrqCause.DMA);
    };

    const dmaRunning = (): boolean => (s.cmd & DmaCmd.START) !== 0;

    // The 64-bit DMA registers: an 8-byte access is the whole register; a 4-byte write to the low
    // half replaces the whole register (zero-extended), as the original; a 4-byte access to the
    // high half reaches bits 63:32 (not in the original, which decodes only the low one).
    const reg64 = (offset: number): "src" | "dst" | "count" | null => {
      const base = offset & ~7;
      if (base === Reg.DMA_SRC) return "src";
      if (base === Reg.DMA_DST) return "dst";
      if (base === Reg.DMA_COUNT) return "count";
      return null;
    };

    const read = (offset: number, size: number): number | bigint => {
      if (offset < 0x80 && size !== 4) return ALL_ONES_64; // the original answers all-ones
      if (offset >= DMA_BUFFER && offset < DMA_BUFFER + DMA_BUFFER_SIZE) {
        // Not in the original: the buffer is readable through BAR0 (debugging, tests).
        const at = offset - DMA_BUFFER;
        const dv = new DataView(buffer.buffer, at, size);
        return size === 8 ? dv.getBigUint64(0, true) : dv.getUint32(0, true);
      }
      const r = reg64(offset);
      if (r !== null) {
        const v = s[r];
        if (size === 8) return offset & 7 ? ALL_ONES_64 : v;
        return Number((offset & 4 ? v >> 32n : v) & 0xffff_ffffn);
      }
      let v: number;
      switch (offset) {
        case Reg.ID:
          v = EDU_ID;
          break;
        case Reg.LIVENESS:
          v = s.liveness;
          break;
        case Reg.FACTORIAL:
          v = s.fact;
          break;
        case Reg.STATUS:
          v = s.status;
          break;
        case Reg.IRQ_STATUS:
          v = s.irq;
          break;
        case Reg.DMA_CMD:
          v = s.cmd;
          break;
        case Reg.DMA_ERROR:
          v = s.error;
          break;
        default:
          return size === 8 ? ALL_ONES_64 : 0xffff_ffff;
      }
      return size === 8 ? BigInt(v) : v;
    };

    const write = (offset: number, data: Uint8Array): void => {
      const size = data.length;
      if (offset < 0x80 && size !== 4) return; // ignored, as the original
      const dv = new DataView(data.buffer, data.byteOffset, size);
      const v64 = size === 8 ? dv.getBigUint64(0, true) : BigInt(dv.getUint32(0, true));
      const v = Number(v64 & 0xffff_ffffn);
      if (offset >= DMA_BUFFER && offset < DMA_BUFFER + DMA_BUFFER_SIZE) {
        buffer.set(data, offset - DMA_BUFFER);
        return;
      }
      const r = reg64(offset);
      if (r !== null) {
        if (dmaRunning()) return; // programming registers is ignored during a transfer
        if (size === 8) {
          if ((offset & 7) === 0) s[r] = v64;
        } else if (offset & 4) s[r] = (s[r] & 0xffff_ffffn) | (v64 << 32n);
        else s[r] = v64;
        return;
      }
      switch (offset) {
        case Reg.LIVENESS:
          s.liveness = ~v >>> 0;
          return;
        case Reg.FACTORIAL:
          if (!(s.status & Status.COMPUTING)) startFactorial(v);
          return;
        case Reg.STATUS:
          s.status = (s.status & ~Status.IRQ_FACT) | (v & Status.IRQ_FACT);
          return;
        case Reg.IRQ_RAISE:
          raise(v);
          return;
        case Reg.IRQ_ACK:
          ack(v);
          return;
        case Reg.DMA_CMD:
          if (dmaRunning() || !(v & DmaCmd.START)) {
            // Not running and not started: the direction and interrupt bits are kept.
            if (!dmaRunning()) s.cmd = (s.cmd & DmaCmd.ERROR) | (v & (DmaCmd.TO_RAM | DmaCmd.IRQ));
            return;
          }
          s.cmd = v & (DmaCmd.START | DmaCmd.TO_RAM | DmaCmd.IRQ);
          s.error = 0;
          later(runDma);
          return;
        default:
          return;
      }
    };

    return {
      buffer,
      dmaMask,
      stats,
      get irqStatus() {
        return s.irq;
      },
      async idle() {
        while (pending.size > 0) await Promise.all([...pending]);
      },
      bars: { [EDU_BAR]: { read, write } },
      reset() {
        generation++;
        Object.assign(s, {
          liveness: 0,
          fact: 0,
          status: 0,
          irq: 0,
          src: 0n,
          dst: 0n,
          count: 0n,
          cmd: 0,
          error: 0,
        });
        buffer.fill(0);
        ctx.irq.lower(0);
      },
      dispose() {
        generation++;
      },
    };
  },
});
