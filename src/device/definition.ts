// What a device model declares (`defineDevice`): its name, bus, regions, interrupts and options,
// and `create(ctx)`, which returns the behaviour (register handlers, reset). The context is all a
// model sees of the world: `ctx.irq`, `ctx.dma`, `ctx.log`, `ctx.clock`, `ctx.options`, its regions.
import type { RegionCap } from "../../protocol/index.ts";
import type { DmaApi } from "../iommu/dma.ts";
import type { Logger } from "../util/log.ts";
import type { IrqSpec } from "./irq.ts";
import type { OptionSpec } from "./options.ts";
import type { Region, RegionHandlers, RegionSpec } from "./region.ts";

export type Bus = "pci" | "platform";

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
  /** Deliver every combined write still pending (an explicit fence); the promise settles once
   * they have reached their handlers. Do not await it inside a WC write handler (that handler's
   * own delivery is what it would wait for). */
  fence(): void | Promise<void>;
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
