// The bus-agnostic device: an ordered set of regions and interrupt indices, a reset, and the
// behaviour a device model supplies. Device models are *declared* (`defineDevice`): regions with
// their sizes, directions and access widths, interrupts with their counts and kinds, options the
// command line may set; `create(ctx)` then returns the behaviour (register handlers, reset).
//
// A model never sees a transport, a message or an fd: it sees its registers being read and
// written, and the context it was created with: `ctx.irq`, `ctx.dma`, `ctx.log`, `ctx.clock`,
// `ctx.options`. PCI devices (src/pci) and platform devices (src/platform) build on this class.
//
// Lifecycle: one Device serves one client at a time, for as long as the server runs. DEVICE_RESET
// calls `reset`; a client disconnect releases every interrupt fd and DMA mapping and resets the
// device, so the next client finds it in its power-on state.
import { DeviceFlag, type RegionCap } from "../../protocol/index.ts";
import type { DmaApi } from "../iommu/dma.ts";
import { VfuError } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { IrqController, type IrqSpec } from "./irq.ts";
import { Region, type RegionHandlers, type RegionSpec, toBytes } from "./region.ts";

export type Bus = "pci" | "platform";

export interface OptionSpec {
  description: string;
  default?: string;
}

export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  setTimeout(fn: () => void, ms: number): { cancel(): void };
}

export interface IrqApi {
  /** Raise an edge vector (MSI, MSI-X, an edge line). */
  raise(index: number, vector?: number): void;
  /** Drive a level vector (INTx, a level line). */
  setLevel(index: number, vector: number, asserted: boolean): void;
}

export interface DeviceContext {
  readonly log: Logger;
  readonly irq: IrqApi;
  readonly dma: DmaApi;
  readonly clock: Clock;
  /** Values from `--set key=value`, with the declared defaults filled in. */
  readonly options: Readonly<Record<string, string>>;
  /** A declared region (its `memory` for memory-backed regions). */
  region(index: number): Region;
}

export interface DeviceBehaviour {
  regions?: Readonly<Record<number, RegionHandlers>>;
  /** Return to the power-on state (DEVICE_RESET, client disconnect, function-level reset). */
  reset?(): void | Promise<void>;
  /** Release timers and other resources when the server stops. */
  dispose?(): void;
}

export interface DeviceDefinition {
  /** Stable kebab-case name used on the command line (`vfu serve <name>`). */
  name: string;
  /** One line for `vfu list`. */
  summary: string;
  bus: Bus;
  regions: readonly RegionSpec[];
  irqs: readonly IrqSpec[];
  options?: Readonly<Record<string, OptionSpec>>;
  create(ctx: DeviceContext): DeviceBehaviour;
  /** Extra DEVICE_GET_REGION_INFO capabilities of a region (the platform layer's TYPE cap on its
   * device-tree region). Omitted: none. */
  regionCaps?(index: number): RegionCap[];
  /** For a model whose shape depends on its options (a BAR's size, whether a region is offered
   * for mmap): the definition to serve for these resolved options. `new Device` (and
   * `new PciDevice`) call it before building any region. Omitted: the shape is fixed. */
  specialize?(options: Readonly<Record<string, string>>): DeviceDefinition;
}

export function defineDevice(def: DeviceDefinition): DeviceDefinition {
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(def.name)) {
    throw new Error(`device name "${def.name}" is not kebab-case`);
  }
  return def;
}

/** Resolve `--set` values against the declared options: unknown keys are an error naming them. */
export function resolveOptions(
  def: Pick<DeviceDefinition, "name" | "options">,
  given: Readonly<Record<string, string>>,
): Record<string, string> {
  const declared = def.options ?? {};
  const out: Record<string, string> = {};
  for (const [key, spec] of Object.entries(declared)) {
    if (spec.default !== undefined) out[key] = spec.default;
  }
  for (const [key, value] of Object.entries(given)) {
    if (!(key in declared)) {
      const known = Object.keys(declared);
      throw new Error(
        `device ${def.name} has no option "${key}"` +
          (known.length ? ` (it has: ${known.join(", ")})` : " (it takes no options)"),
      );
    }
    out[key] = value;
  }
  return out;
}

class RealClock implements Clock {
  readonly #timers = new Set<NodeJS.Timeout>();
  now(): number {
    return performance.now();
  }
  setTimeout(fn: () => void, ms: number): { cancel(): void } {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, ms);
    this.#timers.add(t);
    return {
      cancel: () => {
        clearTimeout(t);
        this.#timers.delete(t);
      },
    };
  }
  cancelAll(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }
}

export interface DeviceSetup {
  log: Logger;
  dma: DmaApi;
  options?: Readonly<Record<string, string>>;
  clock?: Clock;
}

/** What the session needs of a device; implemented by `Device` and the bus layers over it. */
export interface DeviceModel {
  readonly name: string;
  /** DEVICE_GET_INFO flags (PCI or PLATFORM, RESET). */
  readonly flags: number;
  readonly numRegions: number;
  readonly irqs: IrqController;
  region(index: number): Region | undefined;
  /** Extra region-info capabilities (sparse mmap areas, the project's cache-attribute cap). */
  regionCaps(index: number): RegionCap[];
  read(index: number, offset: bigint, count: number): Uint8Array | Promise<Uint8Array>;
  write(index: number, offset: bigint, data: Uint8Array): void | Promise<void>;
  reset(): void | Promise<void>;
  /** The client is gone: release what it gave, then reset. */
  disconnect(): Promise<void>;
  dispose(): void;
}

export class Device implements DeviceModel {
  readonly name: string;
  readonly flags: number;
  readonly irqs: IrqController;
  readonly log: Logger;
  readonly #regions: (Region | undefined)[] = [];
  readonly #behaviour: DeviceBehaviour;
  readonly #clock: Clock;
  readonly #regionCapsOf: DeviceDefinition["regionCaps"];

  constructor(
    definition: DeviceDefinition,
    setup: DeviceSetup,
    extraRegions: Record<number, RegionHandlers> = {},
  ) {
    const options = setup.options ?? resolveOptions(definition, {});
    const def = definition.specialize?.(options) ?? definition;
    this.name = def.name;
    this.log = setup.log;
    this.flags = (def.bus === "pci" ? DeviceFlag.PCI : DeviceFlag.PLATFORM) | DeviceFlag.RESET;
    this.irqs = new IrqController(def.irqs, setup.log);
    this.#regionCapsOf = def.regionCaps?.bind(def);
    this.#clock = setup.clock ?? new RealClock();
    const specs = [...def.regions].sort((a, b) => a.index - b.index);
    const created: Region[] = [];
    try {
      for (const spec of specs) {
        if (this.#regions[spec.index]) throw new Error(`region index ${spec.index} declared twice`);
        const region = new Region(spec);
        created.push(region);
        this.#regions[spec.index] = region;
      }
      const irqs = this.irqs;
      const ctx: DeviceContext = {
        log: setup.log,
        irq: {
          raise: (index, vector = 0) => irqs.raise(index, vector),
          setLevel: (index, vector, asserted) => irqs.setLevel(index, vector, asserted),
        },
        dma: setup.dma,
        clock: this.#clock,
        options,
        region: (index) => {
          const r = this.#regions[index];
          if (!r) throw new Error(`device ${def.name} has no region ${index}`);
          return r;
        },
      };
      this.#behaviour = def.create(ctx);
      const handlers = { ...extraRegions, ...(this.#behaviour.regions ?? {}) };
      for (const [key, h] of Object.entries(handlers)) {
        const index = Number(key);
        const region = this.#regions[index];
        if (!region) throw new Error(`device ${def.name}: handlers given for undeclared region ${index}`);
        region.bind(h);
      }
    } catch (err) {
      for (const r of created) r.dispose();
      throw err;
    }
  }

  get numRegions(): number {
    return this.#regions.length;
  }

  region(index: number): Region | undefined {
    return this.#regions[index];
  }

  regionCaps(index: number): RegionCap[] {
    return this.#regionCapsOf?.(index) ?? [];
  }

  #regionOrThrow(index: number): Region {
    const r = this.#regions[index];
    if (!r) {
      throw new VfuError(22, `region ${index} does not exist on ${this.name}`);
    }
    return r;
  }

  read(index: number, offset: bigint, count: number): Uint8Array | Promise<Uint8Array> {
    const region = this.#regionOrThrow(index);
    const off = region.check(offset, count, false);
    const result = region.read(off, count);
    if (result instanceof Promise) return result.then((r) => toBytes(r, count));
    return toBytes(result, count);
  }

  write(index: number, offset: bigint, data: Uint8Array): void | Promise<void> {
    const region = this.#regionOrThrow(index);
    const off = region.check(offset, data.length, true);
    return region.write(off, data);
  }

  reset(): void | Promise<void> {
    this.irqs.reset();
    return this.#behaviour.reset?.();
  }

  async disconnect(): Promise<void> {
    this.irqs.releaseAll();
    await this.reset();
  }

  dispose(): void {
    if (this.#clock instanceof RealClock) this.#clock.cancelAll();
    this.#behaviour.dispose?.();
    this.irqs.releaseAll();
    for (const r of this.#regions) r?.dispose();
  }
}
