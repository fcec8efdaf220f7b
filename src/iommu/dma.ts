// `ctx.dma`: the device's only way to reach client memory (and peer regions). Everything goes
// through the IO address space of the client currently connected (address-space.ts).
//
// The API, by cost:
// - `read(iova, length)` / `write(iova, bytes)`: copies, always available, asynchronous (memory
//   without an fd is reached with DMA_READ/DMA_WRITE messages). Reject with a DmaFault.
// - `view(iova, length, access)`: zero-copy bytes of fd-backed client memory or a mappable peer
//   region, for a range inside one area and one 1 GiB window. Anything else throws a DmaFault of
//   kind "not-mappable" (ask `mappable()` first, or use `sg`/`read`). The device `release()`s the
//   view when done. A view taken for writing marks its pages dirty (taken, released, and at every
//   report in between). A read view of a read-only area is backed by read-only pages: writing
//   into it is a bug that kills the process, as it would in C.
// - `sg(iova, length, access)`: a scatter-gather list over a range that may cross areas: one
//   segment per area and window, zero-copy `bytes` where the memory is mappable, and `read()`/
//   `write()` (asynchronous, copying) on every segment and on the whole list. Released like a view.
//
// Views and lists are "holds" on their areas. A DMA_UNMAP of an area first calls the device's
// `onUnmap` listeners (with the holds it has there, so it can stop using them; a listener may
// return a promise the unmap waits for), then invalidates the holds: their `bytes` become empty
// (fd windows are detached, so even a Uint8Array the device kept reads as empty; for a peer
// region without an mmap fd only the handle's `bytes` empties), list operations fault "unmapped".
//
// Faults are counted per kind and logged (the first ones, then one line per 1024); a fault never
// crashes the server. The bus gate (`setGate`) lets a bus layer refuse DMA: PCI wires its Bus
// Master Enable bit to it, and a closed gate faults every new DMA with "bus-master-off". Views
// and lists already taken are not revoked by the gate; a device drops them when it sees the bit
// clear.
import type { CacheAttr } from "../device/region.ts";
import type { Logger } from "../util/log.ts";
import { type AddressSpace, toDmaFault } from "./address-space.ts";
import type { Area, AreaHold } from "./area.ts";
import type { BackingKind } from "./backing.ts";
import type { LiveWrite } from "./dirty.ts";
import { DMA_FAULT_KINDS, DmaFault, type DmaFaultKind } from "./faults.ts";

export type DmaAccess = "read" | "write" | "rw";

const EMPTY = new Uint8Array(0);

/** Zero-copy bytes of mapped memory, held until released. */
export interface DmaView {
  readonly iova: bigint;
  readonly length: number;
  readonly access: DmaAccess;
  /** The memory's cache attribute: WB for client memory, the region's for a peer region. */
  readonly cache: CacheAttr;
  /** The bytes; empty once released or once the memory has been unmapped. */
  readonly bytes: Uint8Array;
  /** Released by the device, or invalidated by an unmap. */
  readonly released: boolean;
  /** Invalidated by an unmap (the device did not release it first). */
  readonly stale: boolean;
  /** Idempotent. */
  release(): void;
}

/** One piece of a scatter-gather list: inside one area and one window. */
export interface DmaSegment {
  readonly iova: bigint;
  readonly length: number;
  readonly kind: BackingKind;
  readonly cache: CacheAttr;
  /** Zero-copy bytes when the memory is mappable (empty once the list is released or stale);
   * null for message-backed memory and trapped peer regions. */
  readonly bytes: Uint8Array | null;
  /** Copy the segment out. Rejects with DmaFault. */
  read(): Promise<Uint8Array>;
  /** Copy `data` (at most `length` bytes) in at `offset` within the segment. Rejects with DmaFault. */
  write(data: Uint8Array, offset?: number): Promise<void>;
}

export interface DmaSgList {
  readonly iova: bigint;
  readonly length: number;
  readonly access: DmaAccess;
  readonly segments: readonly DmaSegment[];
  readonly released: boolean;
  readonly stale: boolean;
  /** Gather the whole range. Rejects with DmaFault. */
  read(): Promise<Uint8Array>;
  /** Scatter `data` (exactly `length` bytes) over the range. Rejects with DmaFault. */
  write(data: Uint8Array): Promise<void>;
  release(): void;
}

export interface DmaUnmapEvent {
  /** The area going away, [iova, last]. */
  readonly iova: bigint;
  readonly last: bigint;
  /** This device's views and lists on it (they are invalidated once the listeners return). */
  readonly handles: readonly (DmaView | DmaSgList)[];
}

export type DmaUnmapListener = (event: DmaUnmapEvent) => void | Promise<void>;

export interface DmaApi {
  /** Copy `length` bytes from client memory. Rejects with DmaFault. */
  read(iova: bigint, length: number): Promise<Uint8Array>;
  /** Copy `data` into client memory. Rejects with DmaFault. */
  write(iova: bigint, data: Uint8Array): Promise<void>;
  /** Zero-copy view (default access "read"). Throws DmaFault ("not-mappable" when impossible). */
  view(iova: bigint, length: number, access?: DmaAccess): DmaView;
  /** Whether `view` would succeed for this range now (no fault is counted). */
  mappable(iova: bigint, length: number): boolean;
  /** Scatter-gather list over a range crossing areas (default access "read"). Throws DmaFault. */
  sg(iova: bigint, length: number, access?: DmaAccess): DmaSgList;
  /** Be told before an area this device may use is unmapped; returns the unsubscribe function. */
  onUnmap(listener: DmaUnmapListener): () => void;
  /** Faults seen so far. */
  readonly faults: number;
  /** Faults seen so far, per kind. */
  readonly faultCounts: Readonly<Record<DmaFaultKind, number>>;
  readonly lastFault: DmaFault | null;
  /** Views and lists taken and not yet released. */
  readonly liveHandles: number;
}

/** The DMA port a device is built with: the model's DmaApi plus the bus gate, which belongs to
 * the bus layer (PCI's Bus Master Enable), never to the model. */
export interface DmaPort extends DmaApi {
  /** While `gate()` returns false every new DMA faults "bus-master-off". null: open. */
  setGate(gate: (() => boolean) | null): void;
}

function checkAccess(access: DmaAccess): void {
  if (access !== "read" && access !== "write" && access !== "rw") {
    throw new DmaFault("out-of-range", 0n, 0, `access "${String(access)}" is not read, write or rw`);
  }
}

/** Log the first faults of a device, then one line per this many. */
const LOG_FIRST = 16;
const LOG_EVERY = 1024;

export class DeviceDma implements DmaPort {
  #space: AddressSpace | null = null;
  #detach: (() => void) | null = null;
  #gate: (() => boolean) | null = null;
  #faults = 0;
  #lastFault: DmaFault | null = null;
  readonly #counts = Object.fromEntries(DMA_FAULT_KINDS.map((k) => [k, 0])) as Record<DmaFaultKind, number>;
  readonly #listeners = new Set<DmaUnmapListener>();
  readonly #handles = new Set<ViewHandle | SgList>();
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  get faults(): number {
    return this.#faults;
  }

  get faultCounts(): Readonly<Record<DmaFaultKind, number>> {
    return this.#counts;
  }

  get lastFault(): DmaFault | null {
    return this.#lastFault;
  }

  get liveHandles(): number {
    return this.#handles.size;
  }

  /** The address space in use (null without a client). */
  get space(): AddressSpace | null {
    return this.#space;
  }

  /** Use `space` (a session starting) or nothing (it ended). */
  attach(space: AddressSpace | null): void {
    this.#detach?.();
    this.#detach = null;
    this.#space = space;
    if (space) this.#detach = space.onUnmap((area) => this.#onAreaUnmap(area));
  }

  /** The bus gate: while `gate()` returns false every new DMA faults "bus-master-off". null: open. */
  setGate(gate: (() => boolean) | null): void {
    this.#gate = gate;
  }

  get gateOpen(): boolean {
    return this.#gate === null || this.#gate();
  }

  onUnmap(listener: DmaUnmapListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async read(iova: bigint, length: number): Promise<Uint8Array> {
    try {
      return await this.#open(iova, length).read(iova, length);
    } catch (err) {
      throw this.fault(err, iova, length);
    }
  }

  async write(iova: bigint, data: Uint8Array): Promise<void> {
    const length = data?.length ?? 0;
    try {
      if (!(data instanceof Uint8Array))
        throw new DmaFault("out-of-range", iova, 0, "data is not a Uint8Array");
      await this.#open(iova, length).write(iova, data);
    } catch (err) {
      throw this.fault(err, iova, length);
    }
  }

  mappable(iova: bigint, length: number): boolean {
    try {
      const space = this.#open(iova, length);
      if (length === 0) return false;
      const slices = space.translate(iova, length, false);
      if (slices.length !== 1) return false;
      const s = slices[0]!;
      return s.area.mapped && s.area.backing.span(s.at) >= length;
    } catch {
      return false;
    }
  }

  view(iova: bigint, length: number, access: DmaAccess = "read"): DmaView {
    try {
      checkAccess(access);
      const space = this.#open(iova, length);
      if (length === 0) throw new DmaFault("out-of-range", iova, length, "a view of 0 bytes");
      const slices = translateFor(space, iova, length, access);
      if (slices.length !== 1) {
        throw new DmaFault(
          "not-mappable",
          iova,
          length,
          `the range crosses ${slices.length} areas: use sg()`,
        );
      }
      const { area, at } = slices[0]!;
      if (!area.mapped) {
        throw new DmaFault(
          "not-mappable",
          iova,
          length,
          `${area.backing.describe()} has no zero-copy view: use read/sg`,
        );
      }
      if (area.backing.span(at) < length) {
        throw new DmaFault("not-mappable", iova, length, "the range crosses a 1 GiB window edge: use sg()");
      }
      const bytes = area.view(at, length);
      const h = new ViewHandle(this, space, area, iova, bytes, access);
      area.holds.add(h);
      this.#handles.add(h);
      if (access !== "read") space.dirty.mark(iova, length);
      return h;
    } catch (err) {
      throw this.fault(err, iova, length);
    }
  }

  sg(iova: bigint, length: number, access: DmaAccess = "read"): DmaSgList {
    try {
      checkAccess(access);
      const space = this.#open(iova, length);
      const slices = translateFor(space, iova, length, access);
      const list = new SgList(this, space, iova, length, access);
      try {
        let pos = iova;
        for (const s of slices) {
          if (s.area.mapped) {
            let at = s.at;
            let left = s.length;
            while (left > 0) {
              const n = Math.min(left, s.area.backing.span(at));
              list.add(new Segment(list, s.area, pos, n, s.area.view(at, n)));
              at += BigInt(n);
              pos += BigInt(n);
              left -= n;
            }
          } else {
            list.add(new Segment(list, s.area, pos, s.length, null));
            pos += BigInt(s.length);
          }
        }
      } catch (err) {
        list.release();
        throw err;
      }
      this.#handles.add(list);
      for (const r of list.writeRanges) space.dirty.mark(r.iova, r.length);
      return list;
    } catch (err) {
      throw this.fault(err, iova, length);
    }
  }

  /** The space, when DMA may start now; else throws the fault saying why not. */
  #open(iova: bigint, length: number): AddressSpace {
    if (!this.#space) throw new DmaFault("no-client", iova, length, "no client is connected");
    if (this.#gate !== null && !this.#gate()) {
      throw new DmaFault("bus-master-off", iova, length, "the device may not master the bus now");
    }
    return this.#space;
  }

  /** @internal a segment operation may start now (list alive, gate open). */
  checkSegment(list: SgList, iova: bigint, length: number): AddressSpace {
    if (list.stale) throw new DmaFault("unmapped", iova, length, "the memory of this list has been unmapped");
    if (list.released) throw new DmaFault("out-of-range", iova, length, "the list has been released");
    const space = this.#open(iova, length);
    if (space !== list.space)
      throw new DmaFault("no-client", iova, length, "the list belongs to a client that left");
    return space;
  }

  /** @internal count and log a fault; returns it as a DmaFault. */
  fault(err: unknown, iova: bigint, length: number): DmaFault {
    const fault = toDmaFault(err, iova, length);
    this.#faults++;
    this.#counts[fault.kind]++;
    this.#lastFault = fault;
    if (this.#faults <= LOG_FIRST) this.#log.warn(fault.message);
    else if (this.#faults % LOG_EVERY === 0) {
      this.#log.warn(`${this.#faults} DMA faults so far; the latest: ${fault.message}`);
    }
    return fault;
  }

  /** @internal a handle is gone (released or invalidated). */
  forget(h: ViewHandle | SgList): void {
    this.#handles.delete(h);
  }

  async #onAreaUnmap(area: Area): Promise<void> {
    const handles: (DmaView | DmaSgList)[] = [];
    for (const h of area.holds) {
      if (h.owner === this && (h instanceof ViewHandle || h instanceof SgList)) handles.push(h);
    }
    const event: DmaUnmapEvent = { iova: area.iova, last: area.last, handles };
    for (const listener of [...this.#listeners]) {
      try {
        await listener(event);
      } catch (err) {
        this.#log.error(`a DMA unmap listener failed: ${(err as Error).message}`);
      }
    }
  }
}

function translateFor(space: AddressSpace, iova: bigint, length: number, access: DmaAccess) {
  const slices = space.translate(iova, length, access !== "read");
  if (access === "rw") {
    for (const s of slices) {
      if (!s.area.readable) {
        throw new DmaFault(
          "permission",
          iova,
          length,
          `area at 0x${s.area.iova.toString(16)} is not readable`,
        );
      }
    }
  }
  return slices;
}

class ViewHandle implements DmaView, AreaHold {
  readonly owner: DeviceDma;
  readonly iova: bigint;
  readonly length: number;
  readonly access: DmaAccess;
  readonly cache: CacheAttr;
  readonly writeRanges: readonly LiveWrite[];
  readonly #space: AddressSpace;
  readonly #area: Area;
  #bytes: Uint8Array | null;
  #released = false;
  #stale = false;

  constructor(
    owner: DeviceDma,
    space: AddressSpace,
    area: Area,
    iova: bigint,
    bytes: Uint8Array,
    access: DmaAccess,
  ) {
    this.owner = owner;
    this.#space = space;
    this.#area = area;
    this.iova = iova;
    this.length = bytes.length;
    this.access = access;
    this.cache = area.backing.cache;
    this.#bytes = bytes;
    this.writeRanges = access === "read" ? [] : [{ iova, length: bytes.length }];
  }

  get bytes(): Uint8Array {
    return this.#bytes ?? EMPTY;
  }

  get released(): boolean {
    return this.#released;
  }

  get stale(): boolean {
    return this.#stale;
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#bytes = null;
    this.#area.holds.delete(this);
    this.owner.forget(this);
    if (this.access !== "read" && this.#area.live) this.#space.dirty.mark(this.iova, this.length);
  }

  invalidate(): void {
    if (this.#released) return;
    this.#stale = true;
    this.#released = true;
    this.#bytes = null;
    this.owner.forget(this);
  }
}

class SgList implements DmaSgList, AreaHold {
  readonly owner: DeviceDma;
  readonly space: AddressSpace;
  readonly iova: bigint;
  readonly length: number;
  readonly access: DmaAccess;
  readonly segments: Segment[] = [];
  readonly writeRanges: LiveWrite[] = [];
  readonly #areas = new Set<Area>();
  #released = false;
  #stale = false;

  constructor(owner: DeviceDma, space: AddressSpace, iova: bigint, length: number, access: DmaAccess) {
    this.owner = owner;
    this.space = space;
    this.iova = iova;
    this.length = length;
    this.access = access;
  }

  add(seg: Segment): void {
    this.segments.push(seg);
    if (!this.#areas.has(seg.area)) {
      this.#areas.add(seg.area);
      seg.area.holds.add(this);
    }
    if (this.access !== "read" && seg.mapped) {
      this.writeRanges.push({ iova: seg.iova, length: seg.length });
    }
  }

  get released(): boolean {
    return this.#released;
  }

  get stale(): boolean {
    return this.#stale;
  }

  async read(): Promise<Uint8Array> {
    try {
      if (this.access === "write")
        throw new DmaFault("permission", this.iova, this.length, "the list was taken for writing");
      return await this.owner.checkSegment(this, this.iova, this.length).read(this.iova, this.length);
    } catch (err) {
      throw this.owner.fault(err, this.iova, this.length);
    }
  }

  async write(data: Uint8Array): Promise<void> {
    try {
      if (this.access === "read")
        throw new DmaFault("permission", this.iova, this.length, "the list was taken for reading");
      if (!(data instanceof Uint8Array) || data.length !== this.length) {
        throw new DmaFault(
          "out-of-range",
          this.iova,
          this.length,
          `write of ${data?.length} bytes to a ${this.length}-byte list`,
        );
      }
      await this.owner.checkSegment(this, this.iova, this.length).write(this.iova, data);
    } catch (err) {
      throw this.owner.fault(err, this.iova, this.length);
    }
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    for (const a of this.#areas) {
      a.holds.delete(this);
      if (a.live)
        for (const r of this.writeRanges)
          if (r.iova >= a.iova && r.iova <= a.last) this.space.dirty.mark(r.iova, r.length);
    }
    this.#areas.clear();
    this.owner.forget(this);
  }

  invalidate(): void {
    if (this.#released) return;
    this.#stale = true;
    this.#released = true;
    for (const a of this.#areas) a.holds.delete(this);
    this.#areas.clear();
    this.owner.forget(this);
  }
}

class Segment implements DmaSegment {
  readonly list: SgList;
  readonly area: Area;
  readonly iova: bigint;
  readonly length: number;
  readonly kind: BackingKind;
  readonly cache: CacheAttr;
  readonly mapped: boolean;
  readonly #bytes: Uint8Array | null;

  constructor(list: SgList, area: Area, iova: bigint, length: number, bytes: Uint8Array | null) {
    this.list = list;
    this.area = area;
    this.iova = iova;
    this.length = length;
    this.kind = area.kind;
    this.cache = area.backing.cache;
    this.mapped = bytes !== null;
    this.#bytes = bytes;
  }

  get bytes(): Uint8Array | null {
    if (this.#bytes === null) return null;
    return this.list.released ? EMPTY : this.#bytes;
  }

  async read(): Promise<Uint8Array> {
    const owner = this.list.owner;
    try {
      if (this.list.access === "write")
        throw new DmaFault("permission", this.iova, this.length, "the list was taken for writing");
      return await owner.checkSegment(this.list, this.iova, this.length).read(this.iova, this.length);
    } catch (err) {
      throw owner.fault(err, this.iova, this.length);
    }
  }

  async write(data: Uint8Array, offset = 0): Promise<void> {
    const owner = this.list.owner;
    try {
      if (this.list.access === "read")
        throw new DmaFault("permission", this.iova, this.length, "the list was taken for reading");
      if (
        !(data instanceof Uint8Array) ||
        !Number.isSafeInteger(offset) ||
        offset < 0 ||
        offset + data.length > this.length
      ) {
        throw new DmaFault(
          "out-of-range",
          this.iova,
          this.length,
          `write of ${data?.length} bytes at +${offset} overruns the segment`,
        );
      }
      const at = this.iova + BigInt(offset);
      await owner.checkSegment(this.list, at, data.length).write(at, data);
    } catch (err) {
      throw owner.fault(err, this.iova, this.length);
    }
  }
}
