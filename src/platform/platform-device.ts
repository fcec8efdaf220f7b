// Platform (non-PCI) devices: MMIO regions and interrupt lines with no config space, reported to
// the client as VFIO_DEVICE_FLAGS_PLATFORM, plus a device-tree description of the device.
//
// `definePlatformDevice` turns a declaration into an ordinary DeviceDefinition (so `vfu serve`,
// `Server` and `new Device(def, …)` serve it like any other) laid out as follows:
// - regions 0..n-1 are the declared MMIO regions, in order, uncached (UC) unless declared
//   otherwise; trapped accesses to them must be naturally aligned (offset a multiple of the
//   width), as on a real bus, besides having a declared width;
// - region n is read-only and holds the device-tree source (`renderDts`) as UTF-8 text; its
//   region info carries a VFIO_REGION_INFO_CAP_TYPE capability {VFU_REGION_TYPE,
//   VfuRegionSubtype.DEVICE_TREE} (region-type.ts) so a client finds it by type;
// - interrupt index i is declared interrupt line group i, `count` lines (vectors) each, edge or
//   level; every line is maskable and level lines are automasked, as vfio-platform reports them.
//
// `device.behaviour` (any Device's) is the model's behaviour object, typed by the definition, so an
// embedding program or a test can drive the device's outside world (a GPIO's input pins, a UART's
// line); `PlatformDevice` adds the device-tree description.
import type { RegionCap } from "../../protocol/index.ts";
import { Errno, RegionCapId } from "../../protocol/index.ts";
import {
  checkDeviceName,
  type DeviceBehaviour,
  type DeviceContext,
  type DeviceDefinition,
} from "../device/definition.ts";
import { Device, type DeviceSetup } from "../device/device.ts";
import type { IrqKind, IrqSpec } from "../device/irq.ts";
import { checkOptionDecls, type NoOptions, type OptionDecls } from "../device/options.ts";
import type { RegionHandlers, RegionSpec } from "../device/region.ts";
import { VfuError } from "../util/errors.ts";
import {
  checkNodeName,
  checkProperty,
  checkString,
  type DtClock,
  type DtInterrupt,
  type DtPropertyValue,
  type DtReg,
  type InterruptSense,
  type PlatformDescription,
  renderDts,
} from "./device-tree.ts";
import { VFU_REGION_TYPE, VfuRegionSubtype } from "./region-type.ts";

/** An MMIO region of a platform device: a RegionSpec whose index is its place in `mmio`. */
export type MmioRegionSpec = Omit<RegionSpec, "index">;

/** A group of interrupt lines: one vfio-user interrupt index with `count` vectors. */
export interface InterruptLineSpec {
  name: string;
  kind: IrqKind;
  /** Lines in the group (default 1). */
  count?: number;
  /** Electrical sense written to the device tree: edge lines "rising" (default), "falling" or
   * "both"; level lines "high" (default) or "low". */
  sense?: InterruptSense;
}

export interface PlatformDeviceSpec<
  B extends DeviceBehaviour = DeviceBehaviour,
  O extends OptionDecls = OptionDecls,
> {
  /** Stable kebab-case name used on the command line. */
  name: string;
  /** One line for `vfu list`. */
  summary: string;
  /** Device-tree `compatible`, most specific first (e.g. "arm,pl061", "arm,primecell"). */
  compatible: string | readonly string[];
  /** The node's generic name ("gpio", "serial"); default: the device name. */
  nodeName?: string;
  mmio: readonly MmioRegionSpec[];
  interrupts?: readonly InterruptLineSpec[];
  /** Input clocks, in `clock-names` order. */
  clocks?: readonly DtClock[];
  /** Further device-tree properties of the node (e.g. "gpio-controller": true). */
  properties?: Readonly<Record<string, DtPropertyValue>>;
  options?: O;
  create(ctx: DeviceContext<O>): B;
}

export interface PlatformDeviceDefinition<
  B extends DeviceBehaviour = DeviceBehaviour,
  O extends OptionDecls = OptionDecls,
> extends DeviceDefinition<B, O> {
  readonly bus: "platform";
  /** The device-tree description (with `deviceTreeRegion` set). */
  readonly description: PlatformDescription;
  /** The DTS served in the device-tree region (`renderDts(description)`). */
  readonly dts: string;
}

const defaultSense = (kind: IrqKind): InterruptSense => (kind === "edge" ? "rising" : "high");

function checkSense(line: InterruptLineSpec): InterruptSense {
  const sense = line.sense ?? defaultSense(line.kind);
  const edge = sense === "rising" || sense === "falling" || sense === "both";
  if (line.kind !== "edge" && line.kind !== "level")
    throw new Error(`interrupt line ${line.name}: kind must be "edge" or "level"`);
  if (edge !== (line.kind === "edge")) {
    throw new Error(`interrupt line ${line.name}: a ${line.kind} line cannot have sense "${sense}"`);
  }
  return sense;
}

/** Wrap an MMIO region's handlers so accesses must be naturally aligned. */
function aligned(name: string, h: RegionHandlers): RegionHandlers {
  const check = (offset: number, size: number): void => {
    if (offset % size !== 0) {
      throw new VfuError(Errno.EINVAL, `region ${name}: a ${size}-byte access at ${offset} is not aligned`);
    }
  };
  const out: RegionHandlers = {};
  if (h.read) {
    const read = h.read.bind(h);
    out.read = (offset, size) => {
      check(offset, size);
      return read(offset, size);
    };
  }
  if (h.write) {
    const write = h.write.bind(h);
    out.write = (offset, data) => {
      check(offset, data.length);
      return write(offset, data);
    };
  }
  return out;
}

/**
 * Declare a platform device. Throws an Error naming the problem for a bad name, an empty or
 * malformed `compatible`, a bad node or property name, a property the layer writes itself, an
 * interrupt sense that does not fit its kind, or a clock declared twice.
 */
export function definePlatformDevice<B extends DeviceBehaviour, const O extends OptionDecls = NoOptions>(
  spec: PlatformDeviceSpec<B, O>,
): PlatformDeviceDefinition<B, O> {
  checkDeviceName(spec.name);
  checkOptionDecls(spec.name, spec.options);
  const compatible = typeof spec.compatible === "string" ? [spec.compatible] : [...spec.compatible];
  if (compatible.length === 0) throw new Error(`platform device ${spec.name}: compatible is empty`);
  for (const c of compatible) {
    checkString(`platform device ${spec.name}: compatible`, c);
    if (c.length === 0) throw new Error(`platform device ${spec.name}: an empty compatible string`);
  }
  const nodeName = spec.nodeName ?? spec.name;
  checkNodeName(nodeName);
  const properties = { ...(spec.properties ?? {}) };
  for (const [k, v] of Object.entries(properties)) checkProperty(k, v);
  const clocks = (spec.clocks ?? []).map((c) => ({ ...c }));
  const clockNames = new Set<string>();
  for (const c of clocks) {
    checkString(`platform device ${spec.name}: clock name`, c.name);
    if (!/^[0-9a-zA-Z_,.+-]+$/.test(c.name))
      throw new Error(`platform device ${spec.name}: clock name "${c.name}" must be [0-9a-zA-Z_,.+-]`);
    const key = c.name.replace(/[^0-9a-zA-Z]/g, "_");
    if (clockNames.has(key)) throw new Error(`platform device ${spec.name}: clock ${c.name} declared twice`);
    clockNames.add(key);
    if (!Number.isInteger(c.frequency) || c.frequency < 0 || c.frequency > 0xffff_ffff)
      throw new Error(`platform device ${spec.name}: clock ${c.name} frequency must be a 32-bit Hz count`);
  }

  const regions: RegionSpec[] = spec.mmio.map((r, index) => ({ cache: "UC", ...r, index }));
  const reg: DtReg[] = regions.map((r) => ({
    name: r.name,
    region: r.index,
    size: r.size,
    accessSizes: r.accessSizes ? [...r.accessSizes] : null,
    cache: r.cache ?? "UC",
    readable: r.readable !== false,
    writable: r.writable !== false,
  }));
  const irqs: IrqSpec[] = [];
  const interrupts: DtInterrupt[] = [];
  (spec.interrupts ?? []).forEach((line, index) => {
    const sense = checkSense(line);
    const count = line.count ?? 1;
    if (!Number.isInteger(count) || count < 1)
      throw new Error(`interrupt line ${line.name}: count must be a positive integer`);
    irqs.push({ index, name: line.name, count, kind: line.kind, maskable: true });
    for (let vector = 0; vector < count; vector++) {
      const name = count === 1 ? line.name : `${line.name}${vector}`;
      interrupts.push({ name, index, vector, kind: line.kind, sense });
    }
  });

  const dtIndex = regions.length;
  const description: PlatformDescription = {
    device: spec.name,
    summary: spec.summary,
    nodeName,
    compatible,
    reg,
    interrupts,
    clocks,
    properties,
    deviceTreeRegion: dtIndex,
  };
  const dts = renderDts(description);
  const dtsBytes = new TextEncoder().encode(dts);
  regions.push({ index: dtIndex, name: "device-tree", size: dtsBytes.length, writable: false });

  const instantiate = (ctx: DeviceContext<O>): { behaviour: B; bound: DeviceBehaviour } => {
    const behaviour = spec.create(ctx);
    const handlers: Record<number, RegionHandlers> = {};
    for (const [key, h] of Object.entries(behaviour.regions ?? {})) {
      const index = Number(key);
      handlers[index] = index < dtIndex ? aligned(regions[index]!.name, h) : h;
    }
    if (handlers[dtIndex])
      throw new Error(`device ${spec.name}: region ${dtIndex} is the device-tree region`);
    handlers[dtIndex] = { read: (offset, size) => dtsBytes.slice(offset, offset + size) };
    const bound: DeviceBehaviour = {
      regions: handlers,
      reset: () => behaviour.reset?.(),
      dispose: () => behaviour.dispose?.(),
    };
    return { behaviour, bound };
  };
  const dtCaps = (): RegionCap[] => [
    { id: RegionCapId.TYPE, version: 1, type: VFU_REGION_TYPE, subtype: VfuRegionSubtype.DEVICE_TREE },
  ];

  const def: PlatformDeviceDefinition<B, O> = {
    name: spec.name,
    summary: spec.summary,
    bus: "platform",
    regions,
    irqs,
    options: spec.options,
    instantiate,
    regionCaps: (index) => (index === dtIndex ? dtCaps() : []),
    description,
    dts,
  };
  return Object.freeze(def);
}

/** A definition made by `definePlatformDevice` (or a copy of one): it carries its description. */
export function isPlatformDeviceDefinition(def: DeviceDefinition): def is PlatformDeviceDefinition {
  return def.bus === "platform" && "description" in def && "dts" in def;
}

/** A served platform device (`behaviour` is the model's, as for any Device) that also exposes its
 * device-tree description. Throws what `Device` throws. */
export class PlatformDevice<B extends DeviceBehaviour = DeviceBehaviour> extends Device<B> {
  readonly description: PlatformDescription;

  constructor(def: PlatformDeviceDefinition<B>, setup: DeviceSetup) {
    super(def, setup);
    this.description = def.description;
  }
}

/**
 * The device-tree description of a platform device. A device declared with
 * `definePlatformDevice` returns its own (with its compatible strings, clocks and properties);
 * any other platform DeviceDefinition gets one derived from its regions and interrupts, with
 * compatible "vfio-user-node,<name>" and no device-tree region. Throws for a PCI device, which
 * its config space describes instead.
 */
export function describeDevice(def: DeviceDefinition): PlatformDescription {
  if (isPlatformDeviceDefinition(def)) return structuredClone(def.description);
  if (def.bus !== "platform") {
    throw new Error(
      `${def.name} is a ${def.bus.toUpperCase()} device: its config space describes it, not a device tree`,
    );
  }
  const regions = [...def.regions].sort((a, b) => a.index - b.index);
  return {
    device: def.name,
    summary: def.summary,
    nodeName: def.name,
    compatible: [`vfio-user-node,${def.name}`],
    reg: regions
      .filter((r) => r.size > 0)
      .map((r) => ({
        name: r.name,
        region: r.index,
        size: r.size,
        accessSizes: r.accessSizes ? [...r.accessSizes] : null,
        cache: r.cache ?? "UC",
        readable: r.readable !== false,
        writable: r.writable !== false,
      })),
    interrupts: [...def.irqs]
      .sort((a, b) => a.index - b.index)
      .flatMap((irq) =>
        Array.from({ length: irq.count }, (_, vector) => ({
          name: irq.count === 1 ? irq.name : `${irq.name}${vector}`,
          index: irq.index,
          vector,
          kind: irq.kind ?? "edge",
          sense: defaultSense(irq.kind ?? "edge"),
        })),
      ),
    clocks: [],
    properties: {},
    deviceTreeRegion: null,
  };
}
