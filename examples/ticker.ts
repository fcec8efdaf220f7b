// A periodic timer on a PCI BAR, in TypeScript: the same API as counter.mjs, with its types.
// TypeScript device files run through tsx, so the project needs it installed:
//
//   npm install --save-dev tsx
//   npx vfu serve ./ticker.ts --socket /tmp/ticker.sock
//
// BAR0, 4 KiB of 32-bit registers:
//   0x0 PERIOD  RW  milliseconds between ticks; 0 (the reset value) stops the timer
//   0x4 TICKS   RO  ticks since the timer was last started
//   0x8 STATUS  RW1C bit 0: a tick happened; the interrupt is held while it is set
import {
  definePciDevice,
  leValue,
  type PciDeviceBehaviour,
  type PciDeviceContext,
  type ReadResult,
} from "vfio-user-node";

export const TickerReg = { PERIOD: 0x0, TICKS: 0x4, STATUS: 0x8 } as const;

class Ticker {
  period = 0;
  ticks = 0;
  pending = false;
  #timer: { cancel(): void } | null = null;
  readonly #ctx: PciDeviceContext;

  constructor(ctx: PciDeviceContext) {
    this.#ctx = ctx;
  }

  read(offset: number): ReadResult {
    if (offset === TickerReg.PERIOD) return this.period;
    if (offset === TickerReg.TICKS) return this.ticks;
    if (offset === TickerReg.STATUS) return this.pending ? 1 : 0;
    return 0;
  }

  write(offset: number, data: Uint8Array): void {
    const value = leValue(data);
    if (offset === TickerReg.PERIOD) this.start(value);
    else if (offset === TickerReg.STATUS && value & 1 && this.pending) {
      this.pending = false;
      this.#ctx.irq.lower();
    }
  }

  start(period: number): void {
    this.stop();
    this.period = period;
    this.ticks = 0;
    if (period > 0) this.#schedule();
  }

  stop(): void {
    this.#timer?.cancel();
    this.#timer = null;
  }

  #schedule(): void {
    this.#timer = this.#ctx.clock.setTimeout(() => {
      this.ticks++;
      if (!this.pending) {
        this.pending = true;
        this.#ctx.irq.raise();
      }
      this.#schedule();
    }, this.period);
  }
}

export default definePciDevice({
  name: "ticker",
  summary: "a periodic timer that interrupts on every tick",
  ids: {
    vendor: 0x1234,
    device: 0x0c02,
    subsystemVendor: 0x1234,
    subsystem: 0,
    classCode: 0xff0000,
    revision: 1,
  },
  bars: [{ index: 0, kind: "memory", size: 0x1000, accessSizes: [4] }],
  capabilities: { msi: { vectors: 1, is64: true } },
  interrupts: { intx: true },
  create(ctx): PciDeviceBehaviour {
    const ticker = new Ticker(ctx);
    return {
      bars: {
        0: { read: (offset) => ticker.read(offset), write: (offset, data) => ticker.write(offset, data) },
      },
      reset() {
        ticker.start(0);
        ticker.pending = false;
      },
      dispose() {
        ticker.stop();
      },
    };
  },
});
