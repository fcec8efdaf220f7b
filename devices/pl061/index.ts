// pl061: the ARM PrimeCell PL061 general-purpose I/O controller, as a platform device. Eight
// pins, each an input or an output; GPIODATA is reached through 256 aliases whose address bits
// [9:2] mask which pins an access touches; every pin can raise an interrupt on a rising, falling
// or either edge, or while at a high or low level; the masked interrupts are ORed onto one
// level-high interrupt line. The register table and the device-tree node are in README.md.
//
// The pins' outside world is the server side: `setInput`/`setInputs` on the behaviour (reach it
// through `new PlatformDevice(pl061, …).behaviour`) or `--set inputs=0x..` on the command line
// drive the input levels; `onOutputChange` reports what the outputs drive. No peripheral sits
// behind hardware-control mode (GPIOAFSEL): a pin in that mode reads its input level.
//
// Interrupt detection watches the pin levels, whichever side drives them: an output the client
// toggles is seen by the detector exactly like an input the server toggles.
import { type DeviceBehaviour, definePlatformDevice, leValue } from "../../src/index.ts";

export const Reg = {
  DATA: 0x000, //     RW  0x000-0x3FC: pin data; address bits [9:2] mask the pins accessed
  DIR: 0x400, //      RW  direction: 1 output, 0 input
  IS: 0x404, //       RW  interrupt sense: 1 level, 0 edge
  IBE: 0x408, //      RW  both edges: 1 either edge triggers (overrides IEV)
  IEV: 0x40c, //      RW  event: 1 rising edge / high level, 0 falling edge / low level
  IE: 0x410, //       RW  interrupt mask: 1 the pin's interrupt reaches the line
  RIS: 0x414, //      RO  raw interrupt status
  MIS: 0x418, //      RO  masked interrupt status (RIS & IE)
  IC: 0x41c, //       WO  interrupt clear: 1 clears a latched edge interrupt
  AFSEL: 0x420, //    RW  mode control: 1 hardware control, 0 software (GPIODATA/GPIODIR)
  PERIPH_ID0: 0xfe0, // RO 0x61
  PERIPH_ID1: 0xfe4, // RO 0x10
  PERIPH_ID2: 0xfe8, // RO 0x04
  PERIPH_ID3: 0xfec, // RO 0x00
  PCELL_ID0: 0xff0, //  RO 0x0D
  PCELL_ID1: 0xff4, //  RO 0xF0
  PCELL_ID2: 0xff8, //  RO 0x05
  PCELL_ID3: 0xffc, //  RO 0xB1
} as const;

/** The identification registers 0xFE0-0xFFC: part 0x061, designer 0x41 (ARM), revision 0;
 * then the PrimeCell preamble 0xB105F00D. */
export const ID_VALUES: readonly number[] = [0x61, 0x10, 0x04, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

export const REGS_SIZE = 0x1000;
export const PIN_COUNT = 8;
const PINS = 0xff;

export interface Pl061Behaviour extends DeviceBehaviour {
  /** Drive input pin `pin` (0-7) high or low, as the board around the chip would. */
  setInput(pin: number, high: boolean): void;
  /** Drive several inputs at once: each pin set in `mask` takes its bit of `levels`. */
  setInputs(levels: number, mask?: number): void;
  /** The levels the outside world drives on the pins (bits 0-7). */
  readonly inputs: number;
  /** The level on each pin as the device sees it: outputs from GPIODATA, inputs from outside. */
  pins(): number;
  /** The pins the device drives (GPIODIR set, software mode) and the levels it drives on them. */
  outputs(): { mask: number; levels: number };
  /** Called after the driven outputs or their levels change. */
  onOutputChange: ((outputs: { mask: number; levels: number }) => void) | null;
  /** Whether the combined interrupt line is asserted (GPIOMIS != 0). */
  readonly interruptAsserted: boolean;
}

export const pl061 = definePlatformDevice({
  name: "pl061",
  summary: "ARM PrimeCell PL061 GPIO: 8 pins, masked data access, edge/level interrupts",
  compatible: ["arm,pl061", "arm,primecell"],
  nodeName: "gpio",
  mmio: [{ name: "regs", size: REGS_SIZE, accessSizes: [4], cache: "UC" }],
  interrupts: [{ name: "gpio", kind: "level", sense: "high" }],
  clocks: [{ name: "apb_pclk", frequency: 24_000_000 }],
  properties: {
    "gpio-controller": true,
    "#gpio-cells": 2,
    "interrupt-controller": true,
    "#interrupt-cells": 2,
  },
  options: {
    inputs: {
      kind: "integer",
      min: 0,
      max: PINS,
      hex: true,
      default: 0,
      description: "input levels at start, a pin mask (bit n = pin n high), e.g. 0x05",
    },
  },
  create(ctx): Pl061Behaviour {
    let inputs = ctx.options.inputs;
    const s = { data: 0, dir: 0, is: 0, ibe: 0, iev: 0, ie: 0, latched: 0, afsel: 0 };

    const drivenMask = (): number => s.dir & ~s.afsel & PINS;
    const pinLevels = (): number => {
      const d = drivenMask();
      return ((s.data & d) | (inputs & ~d)) & PINS;
    };
    const outputs = () => ({ mask: drivenMask(), levels: s.data & drivenMask() });
    /** Edge bits are latched until cleared; level bits follow the pins. */
    const rawStatus = (): number => {
      const atLevel = ~(pinLevels() ^ s.iev) & PINS;
      return ((s.latched & ~s.is) | (atLevel & s.is)) & PINS;
    };

    let lastPins = pinLevels();
    let lastOut = outputs();

    const behaviour: Pl061Behaviour = {
      onOutputChange: null,
      get inputs() {
        return inputs;
      },
      get interruptAsserted() {
        return (rawStatus() & s.ie) !== 0;
      },
      setInput(pin, high) {
        if (!Number.isInteger(pin) || pin < 0 || pin >= PIN_COUNT)
          throw new RangeError(`pl061 has pins 0-7, not ${pin}`);
        behaviour.setInputs(high ? 1 << pin : 0, 1 << pin);
      },
      setInputs(levels, mask = PINS) {
        inputs = ((inputs & ~mask) | (levels & mask)) & PINS;
        update();
      },
      pins: pinLevels,
      outputs,
      regions: {
        0: {
          read(offset) {
            if (offset < Reg.DIR) return pinLevels() & ((offset >> 2) & PINS);
            switch (offset) {
              case Reg.DIR:
                return s.dir;
              case Reg.IS:
                return s.is;
              case Reg.IBE:
                return s.ibe;
              case Reg.IEV:
                return s.iev;
              case Reg.IE:
                return s.ie;
              case Reg.RIS:
                return rawStatus();
              case Reg.MIS:
                return rawStatus() & s.ie;
              case Reg.AFSEL:
                return s.afsel;
              default:
                if (offset >= Reg.PERIPH_ID0) return ID_VALUES[(offset - Reg.PERIPH_ID0) >> 2]!;
                return 0; // GPIOIC (write-only) and reserved offsets read as zero
            }
          },
          write(offset, data) {
            const v = leValue(data) & PINS; // the registers are 8 bits wide; upper bits are ignored
            if (offset < Reg.DIR) {
              const mask = (offset >> 2) & PINS;
              s.data = (s.data & ~mask) | (v & mask);
            } else {
              switch (offset) {
                case Reg.DIR:
                  s.dir = v;
                  break;
                case Reg.IS:
                  s.is = v;
                  break;
                case Reg.IBE:
                  s.ibe = v;
                  break;
                case Reg.IEV:
                  s.iev = v;
                  break;
                case Reg.IE:
                  s.ie = v;
                  break;
                case Reg.IC:
                  s.latched &= ~v;
                  break;
                case Reg.AFSEL:
                  s.afsel = v;
                  break;
                default:
                  return; // read-only and reserved offsets ignore writes
              }
            }
            update();
          },
        },
      },
      reset() {
        Object.assign(s, { data: 0, dir: 0, is: 0, ibe: 0, iev: 0, ie: 0, latched: 0, afsel: 0 });
        lastPins = pinLevels();
        update();
      },
    };

    /** Detect edges since the last look, report output changes, drive the interrupt line. */
    function update(): void {
      const now = pinLevels();
      const changed = now ^ lastPins;
      lastPins = now;
      if (changed !== 0) {
        const rising = changed & now;
        const falling = changed & ~now;
        const hit = (changed & s.ibe) | (~s.ibe & ((rising & s.iev) | (falling & ~s.iev)));
        s.latched |= hit & ~s.is & PINS;
      }
      const out = outputs();
      if (out.mask !== lastOut.mask || out.levels !== lastOut.levels) {
        lastOut = out;
        ctx.log.debug(`pl061: outputs mask 0x${out.mask.toString(16)} levels 0x${out.levels.toString(16)}`);
        behaviour.onOutputChange?.(out);
      }
      ctx.irq.setLevel(0, 0, (rawStatus() & s.ie) !== 0);
    }

    return behaviour;
  },
});
