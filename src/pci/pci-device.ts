// Declaring a PCI device: `definePciDevice({ name, summary, ids, bars, rom, capabilities,
// interrupts, options, create })`. Everything about the function's shape is checked here, when the
// device is defined, and every mistake is an Error naming the field (a BAR size that is no power of
// two, a 64-bit BAR on an odd index, an MSI-X table outside its BAR, overlapping capabilities…).
//
// The result is an ordinary DeviceDefinition (bus "pci"): the server, the CLI and `new Device(def)`
// serve it like any device, with 9 regions (BARs 0-5, ROM, config, VGA) and 5 interrupt indices:
//   INTX 0  level, count 1 iff the function has an Interrupt Pin (`interrupts.intx`)
//   MSI  1  edge, count = MSI vectors (Multiple Message Capable), 0 without the capability
//   MSIX 2  edge, count = MSI-X table size, 0 without the capability
//   ERR  3  count 1, trigger only
//   REQ  4  count 1, trigger only
// `create(ctx)` gets a PCI context: `ctx.irq` routes vectors (interrupts.ts), `ctx.pci` is the
// function (config space, power state, error reporting), `ctx.bar(n)` the BAR's region; it returns
// the BAR handlers, a reset(kind) and whatever API the model offers (typed: the definition is a
// `PciDeviceDefinition<B>` for the behaviour `B` that `create` returns). `PciDevice<B>` is a
// Device that also exposes its PciFunction; `device.behaviour` is the model's behaviour.
import type { Deferred } from "../device/deferred.ts";
import {
  type BusHooks,
  type Clock,
  checkDeviceName,
  type DeviceContext,
  type DeviceDefinition,
  type DeviceInstance,
} from "../device/definition.ts";
import { Device, type DeviceSetup } from "../device/device.ts";
import type { IrqSpec } from "../device/irq.ts";
import {
  checkOptionDecls,
  type NoOptions,
  type OptionDecls,
  type OptionValues,
  resolveOptions,
} from "../device/options.ts";
import type { Region, RegionHandlers } from "../device/region.ts";
import type { DmaApi } from "../iommu/dma.ts";
import type { Logger } from "../util/log.ts";
import {
  type BarLayout,
  type BarSpec,
  barRegionSpecs,
  layoutBars,
  layoutRom,
  type RomLayout,
  type RomSpec,
} from "./bar.ts";
import { checkExpress, ExpressCap, type ExpressSpec } from "./capabilities/express.ts";
import { checkDsn, checkVsec, type DsnSpec, ExtCap, type VsecSpec, vsecSize } from "./capabilities/ext.ts";
import {
  type CapPlacement,
  EXT_CAP_END,
  EXT_CAP_START,
  nextPointers,
  placeCapabilities,
  STD_CAP_END,
  STD_CAP_START,
} from "./capabilities/layout.ts";
import { checkMsi, type MsiSpec, msiCapSize } from "./capabilities/msi.ts";
import { layoutMsix, MsixCap, type MsixLayout, type MsixSpec } from "./capabilities/msix.ts";
import { PmCap, type PmSpec } from "./capabilities/pm.ts";
import { checkVendorCap, type VendorCapSpec, vendorCapSize } from "./capabilities/vendor.ts";
import { CONFIG_SIZE_PCI, CONFIG_SIZE_PCIE } from "./config-space.ts";
import { checkIds, type PciIds } from "./header.ts";
import type { PciIrqApi } from "./interrupts.ts";
import { PciFunction, type PciFunctionApi } from "./pci-function.ts";

export type PciResetKind = "device" | "flr" | "power";

export interface PciCapabilities {
  pm?: PmSpec;
  msi?: MsiSpec;
  msix?: MsixSpec;
  /** PCI Express endpoint capability: makes the function PCIe (4096-byte config space). */
  express?: ExpressSpec;
  vendor?: VendorCapSpec | readonly VendorCapSpec[];
  /** Device Serial Number extended capability (PCIe only). */
  dsn?: DsnSpec;
  /** Vendor-specific extended capabilities (PCIe only). */
  vsec?: VsecSpec | readonly VsecSpec[];
}

export interface PciDeviceContext<O extends OptionDecls = OptionDecls> {
  readonly log: Logger;
  readonly dma: DmaApi;
  readonly clock: Clock;
  /** The options, parsed and checked, with the declared defaults filled in. */
  readonly options: OptionValues<O>;
  /** Interrupts, routed by what the driver enabled (see interrupts.ts). */
  readonly irq: PciIrqApi;
  /** The function: config space, command, power state, error reporting. */
  readonly pci: PciFunctionApi;
  /** A declared BAR's region (`.memory` for memory-backed BARs). */
  bar(index: number): Region;
  /** Deliver the combined writes still pending to WC/WB BARs (an explicit fence). */
  fence(): void | Promise<void>;
  /** Run `fn` after `ms` milliseconds unless the function is reset first (DEVICE_RESET, client
   * disconnect, FLR, power-state reset) or disposed. */
  defer(ms: number, fn: () => void | Promise<void>): Deferred;
}

export interface PciDeviceBehaviour {
  /** Handlers per BAR index (declared BARs only; memory-backed BARs may omit theirs). */
  bars?: Readonly<Record<number, RegionHandlers>>;
  /** Back to power-on state. Config space is already reset when this runs. */
  reset?(kind: PciResetKind): void | Promise<void>;
  dispose?(): void;
}

export interface PciDeviceSpec<
  B extends PciDeviceBehaviour = PciDeviceBehaviour,
  O extends OptionDecls = OptionDecls,
> {
  /** Stable kebab-case name (`vfu serve <name>`). */
  name: string;
  summary: string;
  ids: PciIds;
  bars?: readonly BarSpec[];
  rom?: RomSpec;
  capabilities?: PciCapabilities;
  interrupts?: {
    /** The function has an INTx pin (INTA#). Default false. */
    intx?: boolean;
  };
  options?: O;
  create(ctx: PciDeviceContext<O>): B;
}

export type CapKind = "pm" | "msi" | "msix" | "express" | "vendor" | "dsn" | "vsec";

export interface PlacedCapability {
  kind: CapKind;
  /** Position in a list declaration (vendor, vsec). */
  item: number;
  extended: boolean;
  offset: number;
  size: number;
  next: number;
  /** First capability of its list. */
  first: number;
}

/** The validated shape of a PCI function. */
export interface PciLayout {
  configSize: 256 | 4096;
  bars: readonly (BarLayout | undefined)[];
  rom: RomLayout | null;
  msix: MsixLayout | null;
  capabilities: readonly PlacedCapability[];
  interruptPin: number;
  /** Vectors a model may name in `ctx.irq.raise` (the largest of MSI and MSI-X, at least 1). */
  maxVectors: number;
  irqs: readonly IrqSpec[];
}

/** A PCI model brought to life: the model's behaviour, the bound handlers and the function. */
export interface PciDeviceInstance<B> extends DeviceInstance<B> {
  readonly pci: PciFunction;
}

export interface PciDeviceDefinition<
  B extends PciDeviceBehaviour = PciDeviceBehaviour,
  O extends OptionDecls = OptionDecls,
> extends DeviceDefinition<B, O> {
  readonly bus: "pci";
  readonly pci: PciLayout;
  readonly spec: PciDeviceSpec<B, O>;
  instantiate(ctx: DeviceContext<O>, bus: BusHooks): PciDeviceInstance<B>;
  specialize?(options: OptionValues<O>): PciDeviceDefinition<B, O>;
}

function asList<T>(v: T | readonly T[] | undefined): readonly T[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? (v as readonly T[]) : [v as T];
}

/** Validate a declaration into its layout. Throws an Error naming the first problem. */
export function layoutPci(spec: Omit<PciDeviceSpec, "create" | "options">): PciLayout {
  checkIds(spec.ids);
  const bars = layoutBars(spec.bars ?? []);
  const rom = layoutRom(spec.rom);
  const caps = spec.capabilities ?? {};
  const express = caps.express !== undefined;
  if (express) checkExpress(caps.express!);
  if (caps.msi) checkMsi(caps.msi);
  const msix = caps.msix
    ? layoutMsix(caps.msix, (i) => {
        const b = bars[i];
        return b && { size: b.size, kind: b.kind, mmap: b.spec.mmap === true };
      })
    : null;
  if (msix) {
    // The MSI-X table and PBA are registers: combining writes to them would merge vector entries
    // and hide the width checks, so their BARs stay uncached.
    for (const i of new Set([msix.tableBar, msix.pbaBar])) {
      const cache = bars[i]?.spec.cache;
      if (cache === "WC" || cache === "WB")
        throw new Error(
          `BAR ${i} (${bars[i]!.name}): holds the MSI-X table or PBA, so it cannot be ${cache}`,
        );
    }
  }
  const std: Array<CapPlacement & { kind: CapKind; item: number }> = [];
  if (caps.pm) std.push({ kind: "pm", item: 0, name: "pm", size: PmCap.SIZE, offset: caps.pm.offset });
  if (caps.msi)
    std.push({ kind: "msi", item: 0, name: "msi", size: msiCapSize(caps.msi), offset: caps.msi.offset });
  if (caps.msix)
    std.push({ kind: "msix", item: 0, name: "msix", size: MsixCap.SIZE, offset: caps.msix.offset });
  if (express)
    std.push({
      kind: "express",
      item: 0,
      name: "express",
      size: ExpressCap.SIZE,
      offset: caps.express!.offset,
    });
  asList(caps.vendor).forEach((v, i) => {
    checkVendorCap(v, `capabilities.vendor[${i}]`);
    std.push({ kind: "vendor", item: i, name: `vendor[${i}]`, size: vendorCapSize(v), offset: v.offset });
  });
  const ext: Array<CapPlacement & { kind: CapKind; item: number }> = [];
  if (caps.dsn) {
    checkDsn(caps.dsn);
    ext.push({ kind: "dsn", item: 0, name: "dsn", size: ExtCap.DSN_SIZE, offset: caps.dsn.offset });
  }
  asList(caps.vsec).forEach((v, i) => {
    checkVsec(v, `capabilities.vsec[${i}]`);
    ext.push({ kind: "vsec", item: i, name: `vsec[${i}]`, size: vsecSize(v), offset: v.offset });
  });
  if (ext.length > 0 && !express)
    throw new Error("extended capabilities (dsn, vsec) need capabilities.express (a PCIe function)");
  const placed: PlacedCapability[] = [];
  const link = (items: typeof std, start: number, end: number, extended: boolean) => {
    if (items.length === 0) return;
    const offsets = placeCapabilities(items, start, end);
    const nexts = nextPointers(offsets);
    const first = Math.min(...offsets);
    if (extended && first !== EXT_CAP_START)
      throw new Error(
        "the first extended capability must sit at 0x100 (pin one there or let them be placed)",
      );
    items.forEach((c, i) => {
      placed.push({
        kind: c.kind,
        item: c.item,
        extended,
        offset: offsets[i]!,
        size: c.size,
        next: nexts[i]!,
        first,
      });
    });
  };
  link(std, STD_CAP_START, STD_CAP_END, false);
  link(ext, EXT_CAP_START, EXT_CAP_END, true);
  const intx = spec.interrupts?.intx === true;
  const msiVectors = caps.msi?.vectors ?? 0;
  const msixVectors = msix?.vectors ?? 0;
  return {
    configSize: express ? CONFIG_SIZE_PCIE : CONFIG_SIZE_PCI,
    bars,
    rom,
    msix,
    capabilities: placed,
    interruptPin: intx ? 1 : 0,
    maxVectors: Math.max(1, msiVectors, msixVectors),
    irqs: [
      { index: 0, name: "intx", count: intx ? 1 : 0, kind: "level" },
      { index: 1, name: "msi", count: msiVectors, kind: "edge" },
      { index: 2, name: "msix", count: msixVectors, kind: "edge" },
      { index: 3, name: "err", count: 1, kind: "edge", triggerOnly: true },
      { index: 4, name: "req", count: 1, kind: "edge", triggerOnly: true },
    ],
  };
}

/** Declare a PCI device. Throws an Error naming the field when the declaration is inconsistent.
 * The definition is typed by the behaviour `create` returns and by the option declarations. */
export function definePciDevice<B extends PciDeviceBehaviour, const O extends OptionDecls = NoOptions>(
  spec: PciDeviceSpec<B, O>,
): PciDeviceDefinition<B, O> {
  checkDeviceName(spec.name);
  checkOptionDecls(spec.name, spec.options);
  const layout = layoutPci(spec);
  const frameworkBars = new Set<number>();
  if (layout.msix) {
    frameworkBars.add(layout.msix.tableBar);
    frameworkBars.add(layout.msix.pbaBar);
  }
  return {
    name: spec.name,
    summary: spec.summary,
    bus: "pci",
    regions: [
      ...barRegionSpecs(layout.bars, layout.rom, frameworkBars),
      { index: 7, name: "config", size: layout.configSize },
      { index: 8, name: "vga", size: 0 },
    ],
    irqs: layout.irqs,
    options: spec.options,
    pci: layout,
    spec,
    instantiate(ctx, bus) {
      const fn = new PciFunction(layout, spec, ctx, bus);
      const behaviour = spec.create(fn.context(ctx));
      return { behaviour, bound: fn.bind(behaviour, ctx), pci: fn };
    },
  };
}

/** A Device built from a PCI definition that also exposes its function (config space, MSI-X…). */
export class PciDevice<B extends PciDeviceBehaviour = PciDeviceBehaviour> extends Device<B> {
  readonly pci: PciFunction;

  constructor(definition: PciDeviceDefinition<B>, setup: DeviceSetup) {
    let fn: PciFunction | undefined;
    const options = resolveOptions(definition, setup.options ?? {});
    const { specialize: _fixed, ...def } = definition.specialize?.(options) ?? definition;
    super(
      {
        ...def,
        instantiate: (ctx, bus) => {
          const instance = def.instantiate(ctx, bus);
          fn = instance.pci;
          return instance;
        },
      },
      { ...setup, options },
    );
    if (!fn) throw new Error(`${def.name} is not a PCI device definition`);
    this.pci = fn;
  }
}
