// scratchpad: a small platform test device that exercises every part of the framework a device
// model touches: registers with a declared access width, a memory-backed region the client can
// mmap, edge and level interrupts, and DMA through the client's address space. Its register
// table is in README.md beside this file.
import { defineDevice, leValue } from "../../src/index.ts";

export const ID_VALUE = 0x5646_5531; // "VFU1"

export const Reg = {
  ID: 0x00, //         RO  identification, reads 0x56465531
  SCRATCH: 0x04, //    RW  free for the client's use; 0 after reset
  RAISE: 0x08, //      WO  raise vector N (0..3) of interrupt index 0
  RAISED: 0x0c, //     RO  edge interrupts raised since reset
  LEVEL: 0x10, //      RW  bit 0 drives the level interrupt (index 1)
  DMA_ADDR_LO: 0x14, // RW DMA client address, low 32 bits
  DMA_ADDR_HI: 0x18, // RW DMA client address, high 32 bits
  DMA_LEN: 0x1c, //    RW  DMA length in bytes (at most the memory region's size)
  DMA_CMD: 0x20, //    WO  1: client memory -> MEM[0..len); 2: MEM[0..len) -> client memory
  DMA_STATUS: 0x24, // RO  0 idle, 1 busy, 2 done, 3 fault
} as const;

export const REGS_SIZE = 0x100;
export const MEM_SIZE = 0x10000;

export const scratchpad = defineDevice({
  name: "scratchpad",
  summary: "test device: registers, 64 KiB shared memory, edge and level interrupts, DMA",
  bus: "platform",
  regions: [
    { index: 0, name: "regs", size: REGS_SIZE, accessSizes: [4] },
    { index: 1, name: "mem", size: MEM_SIZE, memory: true, mmap: true, cache: "WB" },
  ],
  irqs: [
    { index: 0, name: "events", count: 4, kind: "edge", maskable: true },
    { index: 1, name: "level", count: 1, kind: "level" },
  ],
  options: {
    scratch: {
      kind: "integer",
      min: 0,
      max: 0xffff_ffff,
      hex: true,
      default: 0,
      description: "initial value of the SCRATCH register after reset",
    },
  },
  create(ctx) {
    const initial = ctx.options.scratch;
    const mem = ctx.region(1).memory!;
    const s = { scratch: initial, raised: 0, level: 0, addr: 0n, len: 0, status: 0 };

    async function runDma(cmd: number): Promise<void> {
      const len = Math.min(s.len, mem.length);
      s.status = 1;
      try {
        if (cmd === 1) mem.set(await ctx.dma.read(s.addr, len), 0);
        else await ctx.dma.write(s.addr, mem.slice(0, len));
        s.status = 2;
      } catch {
        s.status = 3;
      }
      ctx.irq.raise(0, 3);
      s.raised++;
    }

    return {
      regions: {
        0: {
          read(offset) {
            switch (offset) {
              case Reg.ID:
                return ID_VALUE;
              case Reg.SCRATCH:
                return s.scratch;
              case Reg.RAISED:
                return s.raised;
              case Reg.LEVEL:
                return s.level;
              case Reg.DMA_ADDR_LO:
                return Number(s.addr & 0xffff_ffffn);
              case Reg.DMA_ADDR_HI:
                return Number(s.addr >> 32n);
              case Reg.DMA_LEN:
                return s.len;
              case Reg.DMA_STATUS:
                return s.status;
              default:
                return 0;
            }
          },
          write(offset, data) {
            const v = leValue(data);
            switch (offset) {
              case Reg.SCRATCH:
                s.scratch = v;
                break;
              case Reg.RAISE:
                if (v < 4) {
                  s.raised++;
                  ctx.irq.raise(0, v);
                }
                break;
              case Reg.LEVEL:
                s.level = v & 1;
                ctx.irq.setLevel(1, 0, s.level === 1);
                break;
              case Reg.DMA_ADDR_LO:
                s.addr = (s.addr & ~0xffff_ffffn) | BigInt(v);
                break;
              case Reg.DMA_ADDR_HI:
                s.addr = (s.addr & 0xffff_ffffn) | (BigInt(v) << 32n);
                break;
              case Reg.DMA_LEN:
                s.len = v;
                break;
              case Reg.DMA_CMD:
                // The reply to this write goes out first; the DMA runs afterwards (it may need
                // the client to answer DMA_READ/DMA_WRITE messages).
                if (v === 1 || v === 2) setImmediate(() => void runDma(v));
                break;
            }
          },
        },
      },
      reset() {
        Object.assign(s, { scratch: initial, raised: 0, level: 0, addr: 0n, len: 0, status: 0 });
        mem.fill(0);
      },
    };
  },
});
