// gpio-idio16: the ACCES PCI-IDIO-16, a conventional PCI card with 16 FET-driven outputs and 16
// optically isolated inputs, register-compatible with what Linux's gpio-pci-idio-16 driver
// (module gpio-pci-idio-16, PCI driver "pci-idio-16") expects. The register file is eight bytes
// at the start of BAR2, a 256-byte I/O BAR; INTA# signals a change of state on the inputs.
// The register table is in README.md beside this file.
//
// Several registers do one thing when read and another when written, as on the card: reading
// 0x2 enables the interrupt and writing it disables it; writing 0x1 (the inputs 0-7 register)
// clears a pending interrupt; reading 0x3 activates the input filters, writing it deactivates them.
//
// Interrupts: while the interrupt is enabled, every change of any input latches a change-of-state
// bit in the status register (bit 0 for inputs 0-7, bit 1 for inputs 8-15) and INTx is asserted.
// It is a level: it stays asserted until the driver clears it (a write to 0x1) or disables the
// interrupt (a write to 0x2, which masks the line but keeps the latched bits). Changes while the
// interrupt is disabled are not latched.
//
// The outside world is the server side: `setInput`/`setInputs` on the behaviour (a served
// device's `behaviour`: `new PciDevice(gpioIdio16, …).behaviour`), `--set inputs=<mask>` for the
// levels at start, and the control FIFO
// (`--set control=<path>`, see control.ts) while it runs. What the guest drives on the outputs is
// logged at info level and reported through `onOutputChange`.
import {
  type ControlFifo,
  definePciDevice,
  openControlChannel,
  type PciDeviceBehaviour,
  type PciDeviceContext,
} from "../../src/index.ts";
import { parseControlLine } from "./control.ts";

export const IDIO16_IDS = {
  vendor: 0x494f, //          ACCES I/O Products ("IO")
  device: 0x0dc8, //          PCI-IDIO-16
  subsystemVendor: 0x494f,
  subsystem: 0x0dc8,
  classCode: 0x118000, //     data acquisition / signal processing controller, other
  revision: 0x00,
} as const;

/** The BAR that holds the registers (the driver maps BAR2 and nothing else). */
export const IDIO16_BAR = 2;
export const IDIO16_BAR_SIZE = 256;

/** BAR2 registers, all 8 bits wide. Read and write often mean different things. */
export const Reg = {
  OUT0_7: 0x0, //      RW  outputs OUT0-7 (bit n = OUTn); reads back the latch
  IN0_7: 0x1, //       R   inputs IIN0-7   W  clear interrupt (any value)
  IRQ_CTL: 0x2, //     R   enable IRQ (reads 0)   W  disable IRQ (any value)
  FILTER_CTL: 0x3, //  R   activate input filters (reads 0)   W  deactivate them (any value)
  OUT8_15: 0x4, //     RW  outputs OUT8-15 (bit n = OUT(n+8))
  IN8_15: 0x5, //      R   inputs IIN8-15   W  ignored
  IRQ_STATUS: 0x6, //  R   interrupt status (IrqStatus bits)   W  ignored
} as const;

/** Bits of IRQ_STATUS. */
export const IrqStatus = {
  COS_IN0_7: 0x01, //  an input of IIN0-7 changed since the last clear
  COS_IN8_15: 0x02, // an input of IIN8-15 changed since the last clear
  PENDING: 0x04, //    INTA# is asserted (enabled and a change latched)
} as const;

export const INPUT_COUNT = 16;
export const OUTPUT_COUNT = 16;
const MASK16 = 0xffff;

export interface Idio16Behaviour extends PciDeviceBehaviour {
  /** Drive isolated input IIN`line` (0-15) high or low, as the field wiring would. */
  setInput(line: number, high: boolean): void;
  /** Drive several inputs at once: every input set in `mask` takes its bit of `levels`. */
  setInputs(levels: number, mask?: number): void;
  /** The input levels (bit n = IINn). */
  readonly inputs: number;
  /** What the outputs drive (bit n = OUTn). */
  readonly outputs: number;
  /** Whether OUT`line` (0-15) is driven. */
  output(line: number): boolean;
  /** Called after the guest changed outputs: the new levels and the bits that changed. */
  onOutputChange: ((outputs: number, changed: number) => void) | null;
  /** The card's interrupt enable (read 0x2 sets it, write 0x2 clears it). */
  readonly irqEnabled: boolean;
  /** IRQ_STATUS as the driver would read it (no side effect). */
  readonly irqStatus: number;
  /** Whether the card asserts INTA#. */
  readonly interruptAsserted: boolean;
  /** Input filters active (read 0x3 activates, write 0x3 deactivates; no other effect here). */
  readonly filtersActive: boolean;
  /** Run one control-channel command line (see control.ts); returns what it did, throws on a
   * malformed line. */
  command(line: string): string;
}

function hex16(v: number): string {
  return `0x${v.toString(16).padStart(4, "0")}`;
}

/** "OUT0=1 OUT3=0" for the bits of `changed`. */
function describeLines(prefix: string, levels: number, changed: number): string {
  const parts: string[] = [];
  for (let i = 0; i < 16; i++) if (changed & (1 << i)) parts.push(`${prefix}${i}=${(levels >> i) & 1}`);
  return parts.join(" ");
}

const OPTIONS = {
  inputs: {
    kind: "integer",
    min: 0,
    max: MASK16,
    hex: true,
    default: 0,
    description: "input levels at start, bit n = IINn high, e.g. 0x0005",
  },
  control: {
    kind: "path",
    description: "FIFO to read commands from (created if absent): input <n> <0|1>, inputs <mask>, status",
  },
} as const;

function createIdio16(ctx: PciDeviceContext<typeof OPTIONS>): Idio16Behaviour {
  const log = ctx.log;
  let inputs = ctx.options.inputs;
  const s = { out: 0, irqEnabled: false, cos: 0, filters: false };
  let control: ControlFifo | null = null;

  const asserted = (): boolean => s.irqEnabled && s.cos !== 0;
  const status = (): number => s.cos | (asserted() ? IrqStatus.PENDING : 0);
  const updateLine = (): void => ctx.irq.setIntx(asserted());

  const setOutputs = (value: number): void => {
    const next = value & MASK16;
    const changed = next ^ s.out;
    s.out = next;
    if (changed === 0) return;
    log.info(`outputs ${hex16(next)}: ${describeLines("OUT", next, changed)}`);
    behaviour.onOutputChange?.(next, changed);
  };

  const setInputs = (levels: number, mask = MASK16): void => {
    if (!Number.isInteger(levels) || !Number.isInteger(mask))
      throw new RangeError(`gpio-idio16: input levels and mask must be integers`);
    const next = ((inputs & ~mask) | (levels & mask)) & MASK16;
    const changed = next ^ inputs;
    inputs = next;
    if (changed === 0) return;
    log.info(`inputs ${hex16(next)}: ${describeLines("IIN", next, changed)}`);
    if (s.irqEnabled) {
      if (changed & 0x00ff) s.cos |= IrqStatus.COS_IN0_7;
      if (changed & 0xff00) s.cos |= IrqStatus.COS_IN8_15;
      updateLine();
    }
  };

  const readByte = (offset: number): number => {
    switch (offset) {
      case Reg.OUT0_7:
        return s.out & 0xff;
      case Reg.IN0_7:
        return inputs & 0xff;
      case Reg.IRQ_CTL:
        if (!s.irqEnabled) {
          s.irqEnabled = true;
          log.debug("interrupt enabled");
          updateLine();
        }
        return 0;
      case Reg.FILTER_CTL:
        s.filters = true;
        return 0;
      case Reg.OUT8_15:
        return s.out >> 8;
      case Reg.IN8_15:
        return inputs >> 8;
      case Reg.IRQ_STATUS:
        return status();
      default:
        return 0; // 0x7-0xFF: nothing decoded
    }
  };

  const writeByte = (offset: number, value: number): void => {
    switch (offset) {
      case Reg.OUT0_7:
        setOutputs((s.out & 0xff00) | value);
        return;
      case Reg.IN0_7:
        if (s.cos !== 0) log.debug("interrupt cleared");
        s.cos = 0;
        updateLine();
        return;
      case Reg.IRQ_CTL:
        if (s.irqEnabled) log.debug("interrupt disabled");
        s.irqEnabled = false;
        updateLine();
        return;
      case Reg.FILTER_CTL:
        s.filters = false;
        return;
      case Reg.OUT8_15:
        setOutputs((s.out & 0x00ff) | (value << 8));
        return;
      default:
        return; // inputs 8-15, status and 0x7-0xFF ignore writes
    }
  };

  const checkLine = (line: number, what: string): void => {
    if (!Number.isInteger(line) || line < 0 || line > 15)
      throw new RangeError(`gpio-idio16 has ${what} 0-15, not ${line}`);
  };

  const stateText = (): string =>
    `outputs ${hex16(s.out)} inputs ${hex16(inputs)} irq ${s.irqEnabled ? "enabled" : "disabled"} ` +
    `status 0x${status().toString(16).padStart(2, "0")} INTx ${asserted() ? "asserted" : "low"}`;

  const behaviour: Idio16Behaviour = {
    onOutputChange: null,
    get inputs() {
      return inputs;
    },
    get outputs() {
      return s.out;
    },
    get irqEnabled() {
      return s.irqEnabled;
    },
    get irqStatus() {
      return status();
    },
    get interruptAsserted() {
      return asserted();
    },
    get filtersActive() {
      return s.filters;
    },
    output(line) {
      checkLine(line, "outputs");
      return ((s.out >> line) & 1) === 1;
    },
    setInput(line, high) {
      checkLine(line, "inputs");
      setInputs(high ? 1 << line : 0, 1 << line);
    },
    setInputs,
    command(text) {
      const cmd = parseControlLine(text);
      switch (cmd.kind) {
        case "input":
          behaviour.setInput(cmd.line, cmd.high);
          return `IIN${cmd.line}=${cmd.high ? 1 : 0}`;
        case "inputs":
          setInputs(cmd.levels);
          return `inputs ${hex16(cmd.levels)}`;
        case "status": {
          const text = stateText();
          log.info(text);
          return text;
        }
        case "none":
          return "";
      }
    },
    bars: {
      [IDIO16_BAR]: {
        // Wider accesses reach the byte registers in address order, as byte lanes would.
        read(offset, size) {
          const out = new Uint8Array(size);
          for (let i = 0; i < size; i++) out[i] = readByte(offset + i);
          return out;
        },
        write(offset, data) {
          for (let i = 0; i < data.length; i++) writeByte(offset + i, data[i]!);
        },
      },
    },
    reset() {
      // The card's registers return to power-on; the field wiring keeps driving the inputs.
      const hadOutputs = s.out;
      Object.assign(s, { out: 0, irqEnabled: false, cos: 0, filters: false });
      if (hadOutputs !== 0) {
        log.info(`reset: outputs ${hex16(0)}`);
        behaviour.onOutputChange?.(0, hadOutputs);
      }
      updateLine();
    },
    dispose() {
      control?.close();
    },
  };

  const controlPath = ctx.options.control;
  if (controlPath) {
    control = openControlChannel(controlPath, (line) => behaviour.command(line), log);
    log.info(`control channel ${controlPath}: "input <0-15> <0|1>", "inputs <mask>", "status"`);
  }
  return behaviour;
}

export const gpioIdio16 = definePciDevice({
  name: "gpio-idio16",
  summary: "ACCES PCI-IDIO-16 GPIO card: 16 outputs, 16 isolated inputs, INTx on input change",
  ids: IDIO16_IDS,
  bars: [{ index: IDIO16_BAR, kind: "io", size: IDIO16_BAR_SIZE, accessSizes: [1, 2, 4], name: "idio16" }],
  interrupts: { intx: true },
  options: OPTIONS,
  create: createIdio16,
});
