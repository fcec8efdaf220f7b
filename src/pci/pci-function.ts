// The run-time PCI function behind a device declared with `definePciDevice`: it owns the config
// space (header, BARs, capability list), the MSI/MSI-X state and the interrupt routing, and turns
// the device model's BAR handlers into the bus-agnostic regions a Device serves:
//   regions 0-5  the BARs (a 64-bit BAR's partner and undeclared BARs have size 0),
//   region 6     the expansion ROM (read-only; size 0 without one),
//   region 7     config space (256 or 4096 bytes, any access width at any offset),
//   region 8     VGA (always size 0; vfio clients expect the index to exist).
// In a BAR that holds the MSI-X table or PBA the framework serves those ranges and enforces the
// device's declared access widths on the rest itself; an access straddling a table edge is
// refused (Errno.EINVAL). BAR accesses are served whatever Command.Memory/I/O Space and the power state
// say: a client routes guest accesses only to BARs the guest enabled, and tests probe BARs
// directly; a model that cares reads ctx.pci.command and ctx.pci.powerState. DMA is different:
// ctx.dma faults "bus-master-off" while Command.Bus Master is clear.
//
// Resets, all cancelling the model's deferred calls (`ctx.defer`), putting config space back to
// its power-on values and calling the model's reset(kind): DEVICE_RESET and client disconnect
// ("device"), a Function Level Reset through the Express capability ("flr"), leaving D3hot
// without No_Soft_Reset ("power"). The client's eventfd bindings (SET_IRQS) are the client's and
// survive an FLR or a power-state reset.
//
// Building one takes two steps: the function (config space, capabilities, interrupt routing)
// first, so the model's `create` gets a context that names it (`context`); then the model's
// behaviour is bound to the regions (`bind`).
import { Errno, PciIrq, PciRegion } from "../../protocol/index.ts";
import type { BusHooks, DeviceBehaviour, DeviceContext } from "../device/definition.ts";
import type { OptionDecls } from "../device/options.ts";
import type { RegionHandlers } from "../device/region.ts";
import { toBytes } from "../device/region.ts";
import { VfuError } from "../util/errors.ts";
import { defineBars } from "./bar.ts";
import { Express } from "./capabilities/express.ts";
import { defineDsn, defineVsec } from "./capabilities/ext.ts";
import { Msi } from "./capabilities/msi.ts";
import { Msix } from "./capabilities/msix.ts";
import { PowerManagement } from "./capabilities/pm.ts";
import { defineVendorCap } from "./capabilities/vendor.ts";
import { ConfigSpace } from "./config-space.ts";
import { defineHeader, PciCommand, PciHeader, STATUS_RW1C } from "./header.ts";
import { PciInterrupts } from "./interrupts.ts";
import type {
  PciDeviceBehaviour,
  PciDeviceContext,
  PciDeviceSpec,
  PciLayout,
  PciResetKind,
} from "./pci-device.ts";

/** What a device model may do with its own function (`ctx.pci`). */
export interface PciFunctionApi {
  /** Config space, device side: `get*` read, `set*` write without the client's masks. */
  readonly config: Pick<ConfigSpace, "size" | "get8" | "get16" | "get32" | "set8" | "set16" | "set32">;
  /** The Command register (Memory/IO decode, Bus Master, Interrupt Disable). */
  readonly command: number;
  /** PowerState of the PM capability: 0 = D0, 3 = D3hot (0 without the capability). */
  readonly powerState: number;
  /** Set Status error bits (PciStatus.*; the driver clears them by writing 1). */
  reportStatus(bits: number): void;
  /** Set PCI Express Device Status error bits (ExpressDevSta.*). Needs the Express capability. */
  reportExpressErrors(bits: number): void;
}

export class PciFunction implements PciFunctionApi {
  readonly layout: PciLayout;
  readonly config: ConfigSpace;
  readonly irq: PciInterrupts;
  readonly pm: PowerManagement | null = null;
  readonly msi: Msi | null = null;
  readonly msix: Msix | null = null;
  readonly express: Express | null = null;
  readonly #spec: Pick<PciDeviceSpec, "name" | "ids" | "capabilities">;
  readonly #bus: BusHooks;
  #model: PciDeviceBehaviour | null = null;
  /** Resets performed, by kind (for tests and inspection). */
  readonly resets = { device: 0, flr: 0, power: 0 };

  constructor(
    layout: PciLayout,
    spec: Pick<PciDeviceSpec, "name" | "ids" | "capabilities">,
    ctx: DeviceContext,
    bus: BusHooks,
  ) {
    this.layout = layout;
    this.#spec = spec;
    this.#bus = bus;
    const cs = new ConfigSpace(layout.configSize);
    this.config = cs;
    defineHeader(cs, {
      ids: spec.ids,
      express: layout.configSize === 4096,
      hasIoBar: layout.bars.some((b) => b?.kind === "io"),
      hasMemoryBar: layout.bars.some((b) => b?.kind === "memory") || layout.rom !== null,
      interruptPin: layout.interruptPin,
      capabilities: layout.capabilities.find((c) => !c.extended)?.first ?? 0,
    });
    defineBars(cs, layout.bars, layout.rom);
    this.irq = new PciInterrupts(cs, ctx.irq, layout.interruptPin !== 0, layout.maxVectors);
    const caps = spec.capabilities ?? {};
    const list = (v: unknown) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
    for (const c of layout.capabilities) {
      switch (c.kind) {
        case "pm":
          this.pm = new PowerManagement(cs, c.offset, c.next, caps.pm!, () => this.reset("power"));
          break;
        case "msi":
          this.msi = new Msi(cs, c.offset, c.next, caps.msi!, (v) => ctx.irq.raise(PciIrq.MSI, v));
          break;
        case "msix":
          this.msix = new Msix(cs, c.offset, c.next, layout.msix!, (v) => ctx.irq.raise(PciIrq.MSIX, v));
          break;
        case "express":
          this.express = new Express(cs, c.offset, c.next, caps.express!, () => this.reset("flr"));
          break;
        case "vendor":
          defineVendorCap(cs, c.offset, c.next, list(caps.vendor)[c.item]);
          break;
        case "dsn":
          defineDsn(cs, c.offset, c.next, caps.dsn!);
          break;
        case "vsec":
          defineVsec(cs, c.offset, c.next, list(caps.vsec)[c.item]);
          break;
      }
    }
    this.irq.msi = this.msi;
    this.irq.msix = this.msix;
    // Interrupt Disable and the MSI/MSI-X enables decide where INTx goes (interrupts.ts).
    cs.watch(PciHeader.COMMAND, 2, () => this.irq.sync());
    if (this.msi) cs.watch(this.msi.offset + 2, 2, () => this.irq.sync());
    if (this.msix) cs.watch(this.msix.offset + 2, 2, () => this.irq.sync());
    // Bus Master Enable gates the function's DMA: while the bit is clear every new ctx.dma
    // operation faults "bus-master-off" (counted and logged by the DMA layer), as a real function
    // may not issue memory requests then. The gate reads the live register, so a reset (Command
    // back to 0) closes it too. Views and lists already taken are not revoked (see iommu/dma.ts).
    bus.setDmaGate(() => (cs.get16(PciHeader.COMMAND) & PciCommand.MASTER) !== 0);
  }

  /** The context the model's `create` gets. */
  context<O extends OptionDecls>(ctx: DeviceContext<O>): PciDeviceContext<O> {
    const layout = this.layout;
    const name = this.#spec.name;
    return {
      log: ctx.log,
      dma: ctx.dma,
      clock: ctx.clock,
      options: ctx.options,
      irq: this.irq,
      pci: this,
      bar: (index) => {
        if (!layout.bars[index]) throw new Error(`device ${name} declares no BAR ${index}`);
        return ctx.region(index);
      },
      fence: () => ctx.fence(),
      defer: (ms, fn) => ctx.defer(ms, fn),
    };
  }

  get command(): number {
    return this.config.get16(PciHeader.COMMAND);
  }

  get powerState(): number {
    return this.pm?.state ?? 0;
  }

  reportStatus(bits: number): void {
    this.config.update16(PciHeader.STATUS, bits & STATUS_RW1C, true);
  }

  reportExpressErrors(bits: number): void {
    if (!this.express) throw new Error("reportExpressErrors needs the Express capability");
    this.express.reportErrors(bits);
  }

  /** Back to power-on state (see the header comment for the kinds), then the model's reset. */
  reset(kind: PciResetKind): void | Promise<void> {
    this.resets[kind]++;
    this.#bus.cancelDeferred();
    const restore = kind === "flr" ? this.express?.keepAcrossFlr() : undefined;
    this.config.reset();
    restore?.();
    this.msix?.reset();
    this.irq.reset();
    return this.#model?.reset?.(kind);
  }

  /** Bind the model's behaviour: the Device's regions 0-8 handlers, reset and dispose. Throws
   * for handlers given for an undeclared BAR. */
  bind(model: PciDeviceBehaviour, ctx: DeviceContext): DeviceBehaviour {
    const given = model.bars ?? {};
    for (const key of Object.keys(given)) {
      if (!this.layout.bars[Number(key)])
        throw new Error(`device ${this.#spec.name}: handlers given for undeclared BAR ${key}`);
    }
    this.#model = model;
    const regions: Record<number, RegionHandlers> = {};
    for (let i = 0; i < 6; i++) {
      const bar = this.layout.bars[i];
      if (!bar) continue;
      const h = given[i];
      const msix = this.msix;
      const framework = msix && (msix.layout.tableBar === i || msix.layout.pbaBar === i);
      if (framework) regions[i] = this.#msixBar(i, h ?? {}, ctx, bar.spec.accessSizes);
      else if (h) regions[i] = h;
    }
    const rom = this.layout.rom;
    if (rom) regions[PciRegion.ROM] = { read: (offset, size) => rom.data.slice(offset, offset + size) };
    regions[PciRegion.CONFIG] = {
      read: (offset, size) => this.config.read(offset, size),
      write: (offset, data) => this.config.write(offset, data),
    };
    return {
      regions,
      reset: () => this.reset("device"),
      dispose: () => model.dispose?.(),
    };
  }

  #msixBar(
    index: number,
    h: RegionHandlers,
    ctx: DeviceContext,
    sizes: readonly number[] | undefined,
  ): RegionHandlers {
    const msix = this.msix!;
    const memory = ctx.region(index).memory;
    const where = (offset: number, size: number) => {
      const at = msix.locate(index, offset, size);
      if (at === "straddle")
        throw new VfuError(
          Errno.EINVAL,
          `BAR ${index} access [0x${offset.toString(16)}, +${size}) straddles MSI-X`,
        );
      if (at === null && sizes && !sizes.includes(size))
        throw new VfuError(
          Errno.EINVAL,
          `BAR ${index} decodes ${sizes.join("/")}-byte accesses, not ${size}`,
        );
      return at;
    };
    return {
      read: (offset, size) => {
        const at = where(offset, size);
        if (at === "table") return msix.readTable(offset, size);
        if (at === "pba") return msix.readPba(offset, size);
        if (h.read) {
          const r = h.read(offset, size);
          return r instanceof Promise ? r.then((v) => toBytes(v, size)) : r;
        }
        return memory ? memory.slice(offset, offset + size) : new Uint8Array(size);
      },
      write: (offset, data) => {
        const at = where(offset, data.length);
        if (at === "table") return msix.writeTable(offset, data);
        if (at === "pba") return; // read-only
        if (h.write) return h.write(offset, data);
        memory?.set(data, offset);
      },
    };
  }
}
