// The bus-agnostic device: an ordered set of regions and interrupt indices, a reset, and the
// behaviour a device model supplies. Device models are *declared* (`defineDevice`): regions with
// their sizes, directions and access widths, interrupts with their counts and kinds, options the
// command line may set; `create(ctx)` then returns the behaviour (register handlers, reset).
//
// A model never sees a transport, a message or an fd: it sees its registers being read and
// written, and the context it was created with: `ctx.irq`, `ctx.dma`, `ctx.log`, `ctx.clock`,
// `ctx.defer`, `ctx.options`. PCI devices (src/pci) and platform devices (src/platform) build on
// this class. `device.behaviour` is what the model's `create` returned, typed by its definition.
//
// Lifecycle: one Device serves one client at a time, for as long as the server runs. DEVICE_RESET
// calls `reset`; a client disconnect releases every interrupt fd and DMA mapping and resets the
// device, so the next client finds it in its power-on state. Every reset, and dispose, first
// cancels the model's deferred calls (`ctx.defer`) that have not fired.
//
// Write combining (README, "Write combining"): trapped writes to a region that declares cache WC
// or WB go into the device's WriteCombiner and reach the handler merged, at a flush point: a read
// of that region, any access to a UC region (the PCI config space is one), an interrupt the model
// raises, `ctx.fence()`, the buffer filling, a write it cannot merge, the end of the batch of
// messages at hand (the session calls `flushWrites("batch")`), SET_IRQS and DEVICE_RESET. A
// disconnect drops what is pending. UC writes are delivered one by one, in order, after any
// pending WC run, so a register write always finds the framebuffer writes before it applied.
// When a delivery is asynchronous (a handler returned a promise), every later access, interrupt
// and delivery of this device waits for it (`#busy`), so order holds for peers and timers too. A
// failing combined write is logged and counted: the writes in it were acknowledged long before
// (they are posted by nature), so it fails nobody's request.
import { DeviceFlag, Errno, type RegionCap } from "../../protocol/index.ts";
import type { DmaPort } from "../iommu/dma.ts";
import { VfuError } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { RealClock } from "./clock.ts";
import { DeferredTimers } from "./deferred.ts";
import type { Clock, DeviceBehaviour, DeviceContext, DeviceDefinition } from "./definition.ts";
import { IrqController } from "./irq.ts";
import { type OptionInput, resolveOptions } from "./options.ts";
import { Region, type RegionHandlers, toBytes } from "./region.ts";
import { type CombinedWrite, type FlushReason, WC_BUFFER_BYTES, WriteCombiner } from "./write-combine.ts";

export interface DeviceSetup {
  log: Logger;
  /** The device's DMA port (the endpoint's `DeviceDma`). */
  dma: DmaPort;
  /** Option values, as text (`--set`) or typed; checked against the declarations, defaults
   * filled in for the rest. */
  options?: Readonly<Record<string, OptionInput>>;
  clock?: Clock;
  /** Bytes the write-combining buffer holds (default WC_BUFFER_BYTES; tests use smaller). */
  wcBufferBytes?: number;
}

/** What the write-combining buffer did, for tests, benchmarks and inspection. */
export interface WriteCombineStats {
  /** Trapped writes that went into the buffer. */
  buffered: number;
  /** Combined writes delivered to handlers. */
  delivered: number;
  /** Deliveries by flush reason. */
  flushes: Record<FlushReason, number>;
  /** Combined writes whose handler failed (logged). */
  failed: number;
  /** Bytes dropped at disconnect. */
  droppedBytes: number;
}

const noop = (): void => {};

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
  /** Deliver the pending combined writes (a flush point the session or a peer reaches). */
  flushWrites(reason: FlushReason): void | Promise<void>;
  read(index: number, offset: bigint, count: number): Uint8Array | Promise<Uint8Array>;
  write(index: number, offset: bigint, data: Uint8Array): void | Promise<void>;
  /** Optional: `write(index, BigInt(offset), src.subarray(start, start + count))`, exactly (same
   * checks, errors, order and flushes), for callers that hold the bytes inside a larger buffer
   * (a message body); `offset` is a non-negative safe integer. A WC store the buffer can take is
   * copied straight from `src`, with no view and no bigint made. `src` is read only during the
   * call. */
  writeFrom?(
    index: number,
    offset: number,
    src: Uint8Array,
    start: number,
    count: number,
  ): void | Promise<void>;
  /** Optional: `n` stores of `width` bytes to consecutive offsets from `offset` (the k-th at
   * `offset + k·width`, its bytes at `src[start + k·stride]`), exactly as `n` `writeFrom` calls
   * in order would be: a store that fails throws with the stores before it applied, and when
   * one returns a promise the rest wait for it (the promise covers them all). */
  writeRunFrom?(
    index: number,
    offset: number,
    src: Uint8Array,
    start: number,
    width: number,
    stride: number,
    n: number,
  ): void | Promise<void>;
  reset(): void | Promise<void>;
  /** The client is gone: release what it gave, then reset. */
  disconnect(): Promise<void>;
  dispose(): void;
}

export class Device<B = unknown> implements DeviceModel {
  readonly name: string;
  /** What the model's `create` returned: its handlers and its own API, typed by the definition. */
  readonly behaviour: B;
  readonly flags: number;
  readonly irqs: IrqController;
  readonly log: Logger;
  readonly #regions: (Region | undefined)[] = [];
  readonly #behaviour: DeviceBehaviour;
  readonly #clock: Clock;
  readonly #deferred: DeferredTimers;
  readonly #regionCapsOf: DeviceDefinition["regionCaps"];
  readonly #wc: WriteCombiner;
  /** The tail of asynchronous deliveries in flight: later accesses of this device wait for it. */
  #busy: Promise<void> | null = null;
  /** `write` is this class's own (a subclass that overrides it gets `writeFrom` through it). */
  readonly #ownWrite: boolean;
  readonly wcStats: WriteCombineStats = {
    buffered: 0,
    delivered: 0,
    flushes: { gap: 0, full: 0, read: 0, uncached: 0, irq: 0, fence: 0, batch: 0, reset: 0 },
    failed: 0,
    droppedBytes: 0,
  };

  constructor(
    definition: DeviceDefinition<B>,
    setup: DeviceSetup,
    extraRegions: Record<number, RegionHandlers> = {},
  ) {
    const options = resolveOptions(definition, setup.options ?? {});
    const def = definition.specialize?.(options) ?? definition;
    this.name = def.name;
    this.log = setup.log;
    this.#wc = new WriteCombiner(setup.wcBufferBytes ?? WC_BUFFER_BYTES);
    this.#ownWrite = this.write === Device.prototype.write;
    this.flags = (def.bus === "pci" ? DeviceFlag.PCI : DeviceFlag.PLATFORM) | DeviceFlag.RESET;
    this.irqs = new IrqController(def.irqs, setup.log);
    this.#regionCapsOf = def.regionCaps?.bind(def);
    this.#clock = setup.clock ?? new RealClock();
    const deferred = new DeferredTimers(this.#clock, setup.log);
    this.#deferred = deferred;
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
        // An interrupt is a flush point: the writes before it reach the model before the
        // client hears of it (delivered later, in order, if a flush is asynchronous).
        irq: {
          raise: (index, vector = 0) => {
            this.#afterFlush("irq", () => irqs.raise(index, vector));
          },
          setLevel: (index, vector, asserted) => {
            this.#afterFlush("irq", () => irqs.setLevel(index, vector, asserted));
          },
        },
        dma: setup.dma,
        clock: this.#clock,
        options,
        region: (index) => {
          const r = this.#regions[index];
          if (!r) throw new Error(`device ${def.name} has no region ${index}`);
          return r;
        },
        fence: () => this.fence(),
        defer: (ms, fn) => deferred.defer(ms, fn),
      };
      const instance = def.instantiate(ctx, {
        setDmaGate: (gate) => setup.dma.setGate(gate),
        cancelDeferred: () => deferred.cancelAll(),
      });
      this.behaviour = instance.behaviour;
      this.#behaviour = instance.bound;
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
      throw new VfuError(Errno.EINVAL, `region ${index} does not exist on ${this.name}`);
    }
    return r;
  }

  read(index: number, offset: bigint, count: number): Uint8Array | Promise<Uint8Array> {
    const region = this.#regionOrThrow(index);
    const off = region.check(offset, count, false);
    // A read of the run's region, or of any UC region, sees every write before it.
    const pending = this.#wc.region;
    const reason: FlushReason | null =
      pending === null ? null : !region.combines ? "uncached" : pending === region ? "read" : null;
    const flushed = reason ? this.flushWrites(reason) : this.#busy;
    if (flushed) return flushed.then(() => this.#read(region, off, count));
    return this.#read(region, off, count);
  }

  #read(region: Region, off: number, count: number): Uint8Array | Promise<Uint8Array> {
    const result = region.read(off, count);
    if (result instanceof Promise) return result.then((r) => toBytes(r, count));
    return toBytes(result, count);
  }

  write(index: number, offset: bigint, data: Uint8Array): void | Promise<void> {
    const region = this.#regionOrThrow(index);
    const off = region.check(offset, data.length, true);
    if (!region.combines) {
      // UC: alone and in order, after whatever is pending.
      const flushed = this.#wc.region !== null ? this.flushWrites("uncached") : this.#busy;
      if (flushed) return flushed.then(() => region.write(off, data));
      return region.write(off, data);
    }
    this.wcStats.buffered++;
    if (this.#busy) {
      // An asynchronous delivery is in flight: join the queue behind it (`data` is a view valid
      // only for this call, so it is copied).
      const copy = data.slice();
      return this.#chain(() => this.#combine(region, off, copy));
    }
    return this.#combine(region, off, data);
  }

  writeFrom(
    index: number,
    offset: number,
    src: Uint8Array,
    start: number,
    count: number,
  ): void | Promise<void> {
    const region = this.#regions[index];
    // The hot path: a WC store the buffer takes as it is (it extends or overlaps the run, or the
    // buffer is empty), nothing in flight. The checks are `write`'s, in its order; the only thing
    // left out is the view of the bytes `write` would have been given.
    if (
      region?.combines &&
      this.#busy === null &&
      this.#ownWrite &&
      this.#wc.accepts(region, offset, count)
    ) {
      region.checkAt(offset, count, true);
      this.wcStats.buffered++;
      if (this.#wc.addFrom(region, offset, src, start, count)) return this.flushWrites("full");
      return;
    }
    return this.write(index, BigInt(offset), src.subarray(start, start + count));
  }

  writeRunFrom(
    index: number,
    offset: number,
    src: Uint8Array,
    start: number,
    width: number,
    stride: number,
    n: number,
  ): void | Promise<void> {
    const region = this.#regions[index];
    const wc = this.#wc;
    let k = 0;
    if (region?.combines && this.#ownWrite && width > 0 && width <= wc.limit && n > 0) {
      // The first store is checked as `writeFrom` would check it; the others have the same width
      // and direction, so only their bounds differ: those in bounds pass the same checks.
      if (this.#busy === null) region.checkAt(offset, width, true);
      const inBounds = Math.min(n, Math.floor((region.size - offset) / width));
      while (k < inBounds && this.#busy === null) {
        const took = wc.appendRun(
          region,
          offset + k * width,
          src,
          start + k * stride,
          width,
          stride,
          inBounds - k,
        );
        let r: void | Promise<void>;
        if (took > 0) {
          this.wcStats.buffered += took;
          k += took;
          if (wc.length < wc.limit) continue;
          r = this.flushWrites("full");
        } else {
          // Not at the run's end (a gap, an overlap, another region's run): the general way.
          r = this.writeFrom(index, offset + k * width, src, start + k * stride, width);
          k++;
        }
        if (r instanceof Promise) return this.#runAfter(r, index, offset, src, start, width, stride, n, k);
      }
    }
    // The rest one by one: out of bounds (the first such store throws), UC, or behind a delivery
    // in flight.
    for (; k < n; k++) {
      const r = this.writeFrom(index, offset + k * width, src, start + k * stride, width);
      if (r instanceof Promise) return this.#runAfter(r, index, offset, src, start, width, stride, n, k + 1);
    }
  }

  async #runAfter(
    pending: Promise<void>,
    index: number,
    offset: number,
    src: Uint8Array,
    start: number,
    width: number,
    stride: number,
    n: number,
    k: number,
  ): Promise<void> {
    await pending;
    for (; k < n; k++) await this.writeFrom(index, offset + k * width, src, start + k * stride, width);
  }

  #combine(region: Region, off: number, data: Uint8Array): void | Promise<void> {
    const wc = this.#wc;
    if (data.length > wc.limit) {
      // Longer than the buffer: delivered alone, after the run before it.
      const flushed = this.flushWrites("gap");
      if (flushed) return flushed.then(() => this.#deliver({ region, offset: off, data }));
      return this.#deliver({ region, offset: off, data });
    }
    if (!wc.accepts(region, off, data.length)) {
      const flushed = this.flushWrites("gap");
      if (flushed) {
        const copy = data.slice();
        return flushed.then(() => this.#combine(region, off, copy));
      }
    }
    if (wc.add(region, off, data)) return this.flushWrites("full");
  }

  /** Deliver the pending run now (an explicit fence). Settles once it reached its handler. */
  fence(): void | Promise<void> {
    return this.flushWrites("fence");
  }

  /** Deliver the pending run, counted under `reason`. Returns a promise only when something is
   * (or was already) in flight asynchronously; it never rejects. */
  flushWrites(reason: FlushReason): void | Promise<void> {
    if (this.#busy) return this.#chain(() => this.#flushNow(reason));
    return this.#flushNow(reason);
  }

  #flushNow(reason: FlushReason): void | Promise<void> {
    const run = this.#wc.take();
    if (!run) return;
    this.wcStats.flushes[reason]++;
    return this.#deliver(run);
  }

  /** One write to its handler; failures are logged, never thrown (see the header comment). */
  #deliver(run: CombinedWrite): void | Promise<void> {
    this.wcStats.delivered++;
    const failed = (err: unknown) => {
      this.wcStats.failed++;
      this.log.error(
        `combined write [0x${run.offset.toString(16)}, +${run.data.length}) to region ${run.region.spec.name} failed: ${
          err instanceof Error ? err.message : String(err)
        }`,
      );
    };
    let r: void | Promise<void>;
    try {
      r = run.region.write(run.offset, run.data);
    } catch (err) {
      failed(err);
      return;
    }
    if (r instanceof Promise) return this.#track(r.catch(failed));
  }

  /** Run `fn` once what is in flight has settled, keeping it at the tail of the queue. */
  #chain<T>(fn: () => T | Promise<T>): Promise<T> {
    const p = this.#busy!.then(fn);
    this.#track(p.then(noop, noop));
    return p;
  }

  /** Make `p` the tail every later access waits for (until it settles). */
  #track(p: Promise<void>): Promise<void> {
    const tail = p.then(() => {
      if (this.#busy === tail) this.#busy = null;
    });
    this.#busy = tail;
    return tail;
  }

  /** Run `fn` after flushing, synchronously when nothing is asynchronous. */
  #afterFlush(reason: FlushReason, fn: () => void): void {
    const flushed = this.flushWrites(reason);
    if (flushed)
      this.#track(flushed.then(fn).catch((err) => this.log.error(`deferred interrupt failed: ${err}`)));
    else fn();
  }

  reset(): void | Promise<void> {
    // Writes accepted before the reset reach the model before it is reset.
    const flushed = this.flushWrites("reset");
    if (flushed) return flushed.then(() => this.#reset());
    return this.#reset();
  }

  #reset(): void | Promise<void> {
    this.#deferred.cancelAll();
    this.irqs.reset();
    return this.#behaviour.reset?.();
  }

  async disconnect(): Promise<void> {
    // The client is gone: what it left in the buffer is dropped, not delivered (the device is
    // about to be reset and its DMA space is already empty).
    if (this.#busy) await this.#busy;
    const dropped = this.#wc.take();
    if (dropped) {
      this.wcStats.droppedBytes += dropped.data.length;
      this.log.debug(
        `dropped ${dropped.data.length} combined bytes to ${dropped.region.spec.name} at disconnect`,
      );
    }
    this.irqs.releaseAll();
    await this.#reset();
  }

  dispose(): void {
    this.#deferred.cancelAll();
    if (this.#clock instanceof RealClock) this.#clock.cancelAll();
    this.#behaviour.dispose?.();
    this.irqs.releaseAll();
    for (const r of this.#regions) r?.dispose();
  }
}
