// What a device model declares (`defineDevice`): its name, bus, regions, interrupts and options,
// and `create(ctx)`, which returns the behaviour: register handlers, reset, and whatever API the
// model offers its outside world (a GPIO's input pins, a display's screen). The context is all a
// model sees of the world: `ctx.irq`, `ctx.dma`, `ctx.log`, `ctx.clock`, `ctx.defer`,
// `ctx.options`, its regions.
//
// A definition is typed by that behaviour and by its option declarations: `Device<B>` built from
// a `DeviceDefinition<B>` hands the behaviour back as `device.behaviour`, typed, and `ctx.options`
// has the declared kinds' types. Bus layers (src/pci, src/platform) build their definitions on
// `instantiate`, which returns both what the model made (`behaviour`) and the bus-agnostic
// handlers the Device serves (`bound`); for `defineDevice` the two are the same object.
import type { RegionCap } from "../../protocol/index.ts";
import type { DmaApi } from "../iommu/dma.ts";
import type { Logger } from "../util/log.ts";
import type { Deferred } from "./deferred.ts";
import type { IrqSpec } from "./irq.ts";
import { checkOptionDecls, type NoOptions, type OptionDecls, type OptionValues } from "./options.ts";
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

export interface DeviceContext<O extends OptionDecls = OptionDecls> {
  readonly log: Logger;
  readonly irq: IrqApi;
  readonly dma: DmaApi;
  readonly clock: Clock;
  /** The options (`--set key=value`), parsed and checked, with the declared defaults filled in. */
  readonly options: OptionValues<O>;
  /** A declared region (its `memory` for memory-backed regions). */
  region(index: number): Region;
  /** Deliver every combined write still pending (an explicit fence); the promise settles once
   * they have reached their handlers. Do not await it inside a WC write handler (that handler's
   * own delivery is what it would wait for). */
  fence(): void | Promise<void>;
  /** Run `fn` after `ms` milliseconds on the device's clock, unless the device is reset (any
   * kind) or disposed first: a reset cancels every deferred call that has not fired. */
  defer(ms: number, fn: () => void | Promise<void>): Deferred;
}

export interface DeviceBehaviour {
  regions?: Readonly<Record<number, RegionHandlers>>;
  /** Return to the power-on state (DEVICE_RESET, client disconnect, function-level reset). */
  reset?(): void | Promise<void>;
  /** Release timers and other resources when the server stops. */
  dispose?(): void;
}

/** What a bus layer may do to the device beyond what a model sees. */
export interface BusHooks {
  /** Gate the device's DMA (PCI: Bus Master Enable): while `gate()` is false every new DMA
   * faults "bus-master-off". null: open. */
  setDmaGate(gate: (() => boolean) | null): void;
  /** Cancel the model's deferred calls (a reset the bus performs itself, such as an FLR). */
  cancelDeferred(): void;
}

/** A device model brought to life: the behaviour its `create` returned (the model's own API) and
 * the handlers the Device binds to its regions. */
export interface DeviceInstance<B> {
  readonly behaviour: B;
  readonly bound: DeviceBehaviour;
}

export interface DeviceDefinition<B = unknown, O extends OptionDecls = OptionDecls> {
  /** Stable kebab-case name used on the command line (`vfu serve <name>`). */
  readonly name: string;
  /** One line for `vfu list`. */
  readonly summary: string;
  readonly bus: Bus;
  readonly regions: readonly RegionSpec[];
  readonly irqs: readonly IrqSpec[];
  readonly options?: O;
  /** Build the model for a device (the Device calls it once, with the device's context). */
  instantiate(ctx: DeviceContext<O>, bus: BusHooks): DeviceInstance<B>;
  /** Extra DEVICE_GET_REGION_INFO capabilities of a region (the platform layer's TYPE cap on its
   * device-tree region). Omitted: none. */
  regionCaps?(index: number): RegionCap[];
  /** For a model whose shape depends on its options (a BAR's size, whether a region is offered
   * for mmap): the definition to serve for these resolved options. `new Device` (and
   * `new PciDevice`) call it before building any region. Omitted: the shape is fixed. */
  specialize?(options: OptionValues<O>): DeviceDefinition<B, O>;
}

/** The behaviour type of a definition: `PciDevice<BehaviourOf<typeof edu>>`. */
export type BehaviourOf<D> = D extends { instantiate(...args: never[]): DeviceInstance<infer B> } ? B : never;

/** What `defineDevice` takes: the definition's fields and `create`, which returns behaviour `B`. */
export interface DeviceSpec<B extends DeviceBehaviour, O extends OptionDecls> {
  name: string;
  summary: string;
  bus: Bus;
  regions: readonly RegionSpec[];
  irqs: readonly IrqSpec[];
  options?: O;
  create(ctx: DeviceContext<O>): B;
  regionCaps?(index: number): RegionCap[];
  specialize?(options: OptionValues<O>): DeviceDefinition<B, O>;
}

export function checkDeviceName(name: string): void {
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(name)) throw new Error(`device name "${name}" is not kebab-case`);
}

/** Declare a bus-agnostic device. Throws an Error for a name that is not kebab-case or an option
 * declaration that does not hold (a bad kind, bounds, or a default the option refuses). */
export function defineDevice<B extends DeviceBehaviour, const O extends OptionDecls = NoOptions>(
  spec: DeviceSpec<B, O>,
): DeviceDefinition<B, O> {
  checkDeviceName(spec.name);
  checkOptionDecls(spec.name, spec.options);
  const { create, ...fields } = spec;
  return {
    ...fields,
    instantiate(ctx) {
      const behaviour = create.call(spec, ctx);
      return { behaviour, bound: behaviour };
    },
  };
}
