// The client's IO address space, modelled on iommufd's: DMA_MAP and DMA_UNMAP (and
// `mapPeer` through the API) build a set of non-overlapping areas `[iova, last]` (last inclusive,
// so an area may end at 2^64-1), each with permissions and a backing (backing.ts): client memory
// with an fd (mmapped in windows), client memory without one (DMA_READ/DMA_WRITE messages), or a
// region of another device served by this process (peers.ts).
//
// Rules (errnos as the DMA_MAP/DMA_UNMAP replies carry them):
// - map: flags must include READ and know only READ|WRITE (Errno.EINVAL); size > 0 (Errno.EINVAL); iova+size
//   must not wrap past 2^64 (Errno.EINVAL: that exact bug was found in the Linux iommufd by a fuzzer);
//   iova, size and fd offset are multiples of the advertised page size (Errno.EINVAL); at most
//   `maxDmaMaps` areas (Errno.ENOSPC); no overlap with an existing area, an identical one included
//   (Errno.EEXIST, as the spec says; libvfio-user's "identical map is a no-op" is not followed); an fd
//   must be a regular file or memfd holding offset+size bytes (Errno.EINVAL, so no access can SIGBUS).
// - unmap takes exactly one whole earlier area: a range that is only part of an area, spans
//   several, or matches nothing is Errno.ENOENT (areas are never split). unmapAll empties the space.
// - An unmap takes the area out of the lookup at once (new DMA to it faults "unmapped"), tells its
//   observers (the device: it may stop, release its views), waits for transfers in flight on it
//   (none may touch the range after the reply), then releases the backing: windows detached
//   (stale views read as empty), fd closed.
// - Reads and writes are split per area: a gap faults "unmapped", a missing permission
//   "permission" (DmaFault). Device writes mark pages dirty when logging is on (dirty.ts).
//
// The lookup structure is a B+ tree (`sorted-btree`) keyed by iova, with a last-hit cache in front
// for repeated DMA to the same area. scripts/bench/iommu.ts compares it with a sorted array.
// Every failure on the map/unmap paths leaves the space as it was or completely changed, never
// half-built; named fault-injection points (fault-injection.ts) prove it in the tests.
//
// OWNERSHIP: `map` takes the fd in every case: on success it moves into the area (closed when the
// area is released); on failure it is closed before the error is thrown. `mapPeer` duplicates the
// peer region's fd; the region keeps its own.

import sortedBtree from "sorted-btree";
import { MAX_MAP_LENGTH, native } from "../../native/index.ts";
import { DmaMapFlag, Errno, U64_MAX } from "../../protocol/index.ts";
import { VfuError } from "../util/errors.ts";
import { closeFds } from "../util/fds.ts";
import type { Logger } from "../util/log.ts";
import { Area } from "./area.ts";
import { type Backing, FdBacking, MessageBacking, type MessagePort, PeerBacking } from "./backing.ts";
import { DirtyLog, type LiveWrite } from "./dirty.ts";
import { inject } from "./fault-injection.ts";
import { DmaFault } from "./faults.ts";
import type { PeerTarget } from "./peers.ts";

export { Area } from "./area.ts";
export type { MessagePort } from "./backing.ts";

// sorted-btree is CommonJS with `exports.default`: under Node's ESM the class is `.default`; a
// CommonJS loader with interop hands the class itself.
const BTree = sortedBtree.default ?? (sortedBtree as unknown as typeof sortedBtree.default);
type Tree = InstanceType<typeof BTree<bigint, Area>>;

/** The longest single DMA read or write (one Uint8Array): 1 GiB, the window size. */
export const MAX_DMA_LENGTH = MAX_MAP_LENGTH;

export interface MapRequest {
  iova: bigint;
  size: bigint;
  flags: number;
  /** -1 for a message-backed area. OWNERSHIP: moves into the address space (see `map`). */
  fd: number;
  offset: bigint;
}

export interface AddressSpaceOptions {
  /** Most areas at once (advertised as `max_dma_maps`). */
  maxDmaMaps: number;
  /** The smallest advertised page size: iova, size and offset of a map are multiples of it. */
  pgsize: number;
  /** Where release failures and observer errors are logged. */
  log?: Logger | null;
}

/** The former name of the options. */
export type AddressSpaceLimits = AddressSpaceOptions;

/** One piece of a translated range, inside one area: `length` bytes at area-relative `at`. */
export interface AreaSlice {
  area: Area;
  at: bigint;
  length: number;
}

/** Told when an area leaves the space, before its views are detached; may return a promise the
 * unmap waits for. */
export type UnmapObserver = (area: Area) => void | Promise<void>;

function compareBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/** Turn whatever a transfer threw into a DmaFault. */
export function toDmaFault(err: unknown, iova: bigint, length: number, area?: Area): DmaFault {
  if (err instanceof DmaFault) return err;
  if (area && !area.live) {
    return new DmaFault("unmapped", iova, length, `area ${hex(area.iova)} was unmapped during the transfer`);
  }
  const errno = (err as { errno?: unknown } | null)?.errno;
  const message = err instanceof Error ? err.message : String(err);
  return new DmaFault(errno === Errno.ENOTCONN ? "no-client" : "transfer", iova, length, message);
}

export class AddressSpace {
  readonly #tree: Tree = new BTree<bigint, Area>(undefined, compareBig);
  readonly #opts: AddressSpaceOptions;
  readonly #pgsize: bigint;
  readonly #log: Logger | null;
  readonly #observers = new Set<UnmapObserver>();
  readonly #closing = new Set<Promise<void>>();
  readonly #pair: [bigint, Area] = [0n, null as unknown as Area];
  #lastHit: Area | null = null;
  /** Dirty page logging of device writes (DEVICE_FEATURE DMA_LOGGING_*). */
  readonly dirty: DirtyLog;
  /** How message-backed areas are reached; null while no client can serve DMA_READ/WRITE. */
  messages: MessagePort | null = null;

  constructor(opts: AddressSpaceOptions) {
    if (!Number.isInteger(opts.pgsize) || opts.pgsize <= 0 || (opts.pgsize & (opts.pgsize - 1)) !== 0) {
      throw new RangeError(`page size ${opts.pgsize} is not a power of two`);
    }
    this.#opts = opts;
    this.#pgsize = BigInt(opts.pgsize);
    this.#log = opts.log ?? null;
    this.dirty = new DirtyLog(opts.pgsize, () => this.#liveWrites());
  }

  get count(): number {
    return this.#tree.size;
  }

  get pageSize(): number {
    return this.#opts.pgsize;
  }

  get maxDmaMaps(): number {
    return this.#opts.maxDmaMaps;
  }

  /** The live areas, by iova. */
  areas(): Area[] {
    return Array.from(this.#tree.values());
  }

  /** Call `observer` for every area leaving the space; returns the unsubscribe function. */
  onUnmap(observer: UnmapObserver): () => void {
    this.#observers.add(observer);
    return () => this.#observers.delete(observer);
  }

  // ---- map ------------------------------------------------------------------------------------

  /** Map client memory (fd ≥ 0: shared, mmapped; fd -1: reached with messages). Throws VfuError
   * (Errno.EINVAL, Errno.ENOSPC, Errno.EEXIST) or InjectedFault. OWNERSHIP: takes `req.fd` whatever happens. */
  map(req: MapRequest): Area {
    let fd = req.fd;
    try {
      const { iova, size, flags, offset } = req;
      const last = this.#checkNew(iova, size, flags, "DMA_MAP");
      if (offset < 0n || offset % this.#pgsize !== 0n) {
        throw new VfuError(
          Errno.EINVAL,
          `DMA_MAP offset ${hex(offset)} is not a multiple of the page size ${this.#pgsize}`,
        );
      }
      let backing: Backing;
      if (fd >= 0) {
        let st: ReturnType<typeof native.fstat>;
        try {
          st = native.fstat(fd);
        } catch (err) {
          throw new VfuError(Errno.EINVAL, `DMA_MAP fd cannot be inspected: ${(err as Error).message}`);
        }
        inject("map.after-fstat");
        if (!st.isRegular)
          throw new VfuError(Errno.EINVAL, "DMA_MAP fd is not mappable memory (not a regular file or memfd)");
        if (BigInt(st.size) < offset + size) {
          throw new VfuError(
            Errno.EINVAL,
            `DMA_MAP fd holds ${st.size} bytes, less than offset ${hex(offset)} + size ${hex(size)}`,
          );
        }
        backing = new FdBacking(fd, offset, size, st, (flags & DmaMapFlag.WRITE) !== 0);
        fd = -1; // OWNERSHIP: the backing's now
      } else {
        backing = new MessageBacking(iova, () => this.#port(iova));
      }
      return this.#insert(new Area(iova, last, flags, backing));
    } finally {
      if (fd >= 0) closeFds([fd]);
    }
  }

  /**
   * Map `size` bytes of a peer device's region, from `offset` in it (default: the whole region),
   * at `iova`. The iova must be page-aligned; offset and size need not be. WRITE needs a writable
   * region. Throws VfuError (Errno.EINVAL, Errno.ENOENT for a peer that is gone, Errno.ENOSPC, Errno.EEXIST). When the
   * peer leaves the registry, the area is unmapped as a client's unmap would.
   */
  mapPeer(
    iova: bigint,
    peer: PeerTarget,
    flags: number = DmaMapFlag.READ | DmaMapFlag.WRITE,
    range: { offset?: bigint; size?: bigint } = {},
  ): Area {
    if (!peer.alive) throw new VfuError(Errno.ENOENT, `peer device ${peer.name} is gone`);
    const region = peer.region;
    const offset = range.offset ?? 0n;
    const regionSize = BigInt(region.size);
    if (offset < 0n || offset >= regionSize) {
      throw new VfuError(
        Errno.EINVAL,
        `offset ${hex(offset)} lies outside peer region ${peer.name}:${peer.index}`,
      );
    }
    const size = range.size ?? regionSize - offset;
    if (size > regionSize - offset) {
      throw new VfuError(
        Errno.EINVAL,
        `${hex(size)} bytes from ${hex(offset)} exceed peer region ${peer.name}:${peer.index}`,
      );
    }
    const last = this.#checkNew(iova, size, flags, "peer map", false);
    if (!region.readable)
      throw new VfuError(Errno.EINVAL, `peer region ${peer.name}:${peer.index} is not readable`);
    const writable = (flags & DmaMapFlag.WRITE) !== 0;
    if (writable && !region.writable) {
      throw new VfuError(
        Errno.EINVAL,
        `peer region ${peer.name}:${peer.index} is not writable: map it READ only`,
      );
    }
    let dup = -1;
    if (region.mmapFd !== null) {
      dup = native.dup(region.mmapFd);
      try {
        inject("map.after-dup");
      } catch (err) {
        closeFds([dup]);
        throw err;
      }
    }
    // OWNERSHIP: the dup moves into the backing; #insert releases it on failure.
    const backing = new PeerBacking(peer, Number(offset), Number(size), writable, dup);
    const area = this.#insert(new Area(iova, last, flags, backing));
    backing.watch(() => {
      if (this.#tree.get(area.iova) === area) {
        this.#log?.info(`peer ${peer.name} is gone: unmapping ${area.describe()}`);
        void this.#drop(area);
      }
    });
    return area;
  }

  /** Validate a new area's range and flags; returns its last byte. */
  #checkNew(iova: bigint, size: bigint, flags: number, what: string, alignSize = true): bigint {
    const R = DmaMapFlag.READ;
    const W = DmaMapFlag.WRITE;
    if ((flags & ~(R | W)) !== 0 || (flags & R) === 0) {
      throw new VfuError(
        Errno.EINVAL,
        `${what} flags 0x${flags.toString(16)}: READ is required, only READ|WRITE are known`,
      );
    }
    if (size <= 0n) throw new VfuError(Errno.EINVAL, `${what} of size 0`);
    if (iova < 0n || iova > U64_MAX - (size - 1n)) {
      throw new VfuError(Errno.EINVAL, `${what} iova ${hex(iova)} + size ${hex(size)} wraps past 2^64`);
    }
    const pg = this.#pgsize;
    if (iova % pg !== 0n || (alignSize && size % pg !== 0n)) {
      throw new VfuError(
        Errno.EINVAL,
        `${what} iova ${hex(iova)} and size ${hex(size)} must be multiples of the page size ${pg}`,
      );
    }
    if (this.#tree.size >= this.#opts.maxDmaMaps) {
      throw new VfuError(
        Errno.ENOSPC,
        `already ${this.#tree.size} DMA maps (limit ${this.#opts.maxDmaMaps})`,
      );
    }
    const last = iova + size - 1n;
    // The area starting last at or below `last` is the only one that can overlap.
    const below = this.#tree.getPairOrNextLower(last, this.#pair);
    if (below && below[1].last >= iova) {
      const other = below[1];
      throw new VfuError(
        Errno.EEXIST,
        `${what} [${hex(iova)}, ${hex(last)}] overlaps [${hex(other.iova)}, ${hex(other.last)}]`,
      );
    }
    return last;
  }

  #insert(area: Area): Area {
    try {
      inject("map.before-insert");
      this.#tree.set(area.iova, area);
      try {
        inject("map.after-insert");
      } catch (err) {
        this.#tree.delete(area.iova);
        throw err;
      }
    } catch (err) {
      area.release(this.#log);
      throw err;
    }
    return area;
  }

  #port(iova: bigint): MessagePort {
    if (!this.messages) throw new DmaFault("no-client", iova, 0, "no client to serve message-based DMA");
    return this.messages;
  }

  // ---- unmap ----------------------------------------------------------------------------------

  /** Remove exactly the area [iova, iova+size): VfuError Errno.ENOENT unless one area is exactly that.
   * Resolves once the area's users were told, its transfers finished and its memory released. */
  async unmap(iova: bigint, size: bigint): Promise<Area> {
    const area = this.#tree.get(iova);
    if (!area || area.size !== size) {
      throw new VfuError(Errno.ENOENT, `no DMA map is exactly [${hex(iova)}, +${hex(size)})`);
    }
    inject("unmap.before-remove");
    await this.#drop(area);
    return area;
  }

  /** Remove every area (UNMAP_ALL, client disconnect); resolves when all are released. */
  async unmapAll(): Promise<void> {
    const drops = this.areas().map((a) => this.#drop(a));
    await Promise.all([...drops, ...this.#closing]);
  }

  /** Take `area` out of the lookup now; tell, wait, release in the background of the promise. */
  #drop(area: Area): Promise<void> {
    this.#tree.delete(area.iova);
    if (this.#lastHit === area) this.#lastHit = null;
    area.close();
    const done: Promise<void> = this.#quiesce(area).finally(() => this.#closing.delete(done));
    this.#closing.add(done);
    return done;
  }

  async #quiesce(area: Area): Promise<void> {
    try {
      for (const observer of [...this.#observers]) {
        try {
          await observer(area);
        } catch (err) {
          this.#log?.error(`an unmap observer failed for ${area.describe()}: ${(err as Error).message}`);
        }
      }
      await area.idle();
      inject("unmap.before-release");
    } catch (err) {
      this.#log?.error(`quiescing ${area.describe()} failed (released anyway): ${(err as Error).message}`);
    } finally {
      area.release(this.#log);
    }
  }

  // ---- translation and access -----------------------------------------------------------------

  /** The live area containing `iova`, or null. */
  find(iova: bigint): Area | null {
    const hit = this.#lastHit;
    if (hit !== null && hit.iova <= iova && iova <= hit.last) return hit;
    const pair = this.#tree.getPairOrNextLower(iova, this.#pair);
    if (pair !== undefined && iova <= pair[1].last) {
      this.#lastHit = pair[1];
      return pair[1];
    }
    return null;
  }

  /** Throws DmaFault "out-of-range" unless [iova, iova+length) is a valid, non-wrapping range. */
  static checkRange(iova: bigint, length: number): void {
    if (typeof iova !== "bigint" || iova < 0n || iova > U64_MAX) {
      throw new DmaFault("out-of-range", typeof iova === "bigint" ? iova : 0n, length, "iova is not a u64");
    }
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new DmaFault("out-of-range", iova, length, "length is not a byte count");
    }
    if (length > MAX_DMA_LENGTH) {
      throw new DmaFault("out-of-range", iova, length, `one access moves at most ${MAX_DMA_LENGTH} bytes`);
    }
    if (length > 0 && iova > U64_MAX - BigInt(length - 1)) {
      throw new DmaFault("out-of-range", iova, length, "range wraps past 2^64");
    }
  }

  /** Split [iova, iova+length) into per-area slices, checking permissions. Throws DmaFault. */
  translate(iova: bigint, length: number, write: boolean): AreaSlice[] {
    AddressSpace.checkRange(iova, length);
    inject("translate");
    const out: AreaSlice[] = [];
    let pos = iova;
    let left = length;
    while (left > 0) {
      const area = this.find(pos);
      if (!area) throw new DmaFault("unmapped", iova, length, `${hex(pos)} is not mapped`);
      if (write ? !area.writable : !area.readable) {
        throw new DmaFault(
          "permission",
          iova,
          length,
          `area at ${hex(area.iova)} is not ${write ? "writable" : "readable"}`,
        );
      }
      const avail = area.last - pos + 1n;
      const n = avail < BigInt(left) ? Number(avail) : left;
      out.push({ area, at: pos - area.iova, length: n });
      left -= n;
      if (left > 0) pos = area.last + 1n;
    }
    return out;
  }

  /** Copy `length` bytes out of the space. Rejects with DmaFault. */
  async read(iova: bigint, length: number): Promise<Uint8Array> {
    const slices = this.translate(iova, length, false);
    const out = new Uint8Array(length);
    if (allMapped(slices)) {
      copyOut(slices, out, iova);
      return out;
    }
    for (const s of slices) s.area.begin();
    let o = 0;
    let current: Area | undefined;
    try {
      for (const s of slices) {
        current = s.area;
        if (!s.area.live)
          throw new DmaFault("unmapped", iova, length, `area ${hex(s.area.iova)} was unmapped`);
        if (s.area.mapped) {
          for (const piece of s.area.pieces(s.at, s.length)) {
            out.set(piece, o);
            o += piece.length;
          }
        } else {
          const bytes = await s.area.backing.read(s.at, s.length, s.area.signal);
          if (bytes.length !== s.length)
            throw new Error(`the backing returned ${bytes.length} of ${s.length} bytes`);
          out.set(bytes, o);
          o += s.length;
        }
      }
    } catch (err) {
      throw toDmaFault(err, iova, length, current);
    } finally {
      for (const s of slices) s.area.end();
    }
    return out;
  }

  /** Copy `data` into the space (a device write: marks pages dirty). Rejects with DmaFault. */
  async write(iova: bigint, data: Uint8Array): Promise<void> {
    const slices = this.translate(iova, data.length, true);
    if (allMapped(slices)) {
      try {
        copyIn(slices, data, iova);
      } finally {
        this.dirty.mark(iova, data.length);
      }
      return;
    }
    for (const s of slices) s.area.begin();
    // Marked before (a report during the transfer must not miss it) and after (nor clear it early).
    this.dirty.mark(iova, data.length);
    let o = 0;
    let current: Area | undefined;
    try {
      for (const s of slices) {
        current = s.area;
        if (!s.area.live)
          throw new DmaFault("unmapped", iova, data.length, `area ${hex(s.area.iova)} was unmapped`);
        if (s.area.mapped) {
          for (const piece of s.area.pieces(s.at, s.length)) {
            piece.set(data.subarray(o, o + piece.length));
            o += piece.length;
          }
        } else {
          await s.area.backing.write(s.at, data.subarray(o, o + s.length), s.area.signal);
          o += s.length;
        }
      }
    } catch (err) {
      throw toDmaFault(err, iova, data.length, current);
    } finally {
      this.dirty.mark(iova, data.length);
      for (const s of slices) s.area.end();
    }
  }

  #liveWrites(): LiveWrite[] {
    const out: LiveWrite[] = [];
    for (const area of this.#tree.values()) {
      for (const h of area.holds) {
        const w = (h as { writeRanges?: readonly LiveWrite[] }).writeRanges;
        if (w) for (const r of w) out.push(r);
      }
    }
    return out;
  }

  /** Check the structure's invariants (tests): throws an Error naming the first broken one. */
  verify(): void {
    let prev: Area | null = null;
    let n = 0;
    for (const [key, area] of this.#tree.entries()) {
      n++;
      if (key !== area.iova) throw new Error(`area ${area.describe()} is filed under ${hex(key)}`);
      if (!area.live) throw new Error(`area ${area.describe()} is in the tree but ${area.state}`);
      if (area.last < area.iova || area.last > U64_MAX)
        throw new Error(`area ${area.describe()} has a bad range`);
      if (prev && prev.last >= area.iova)
        throw new Error(`areas ${prev.describe()} and ${area.describe()} overlap`);
      prev = area;
    }
    if (n !== this.#tree.size) throw new Error(`the tree holds ${n} areas but says ${this.#tree.size}`);
    if (n > this.#opts.maxDmaMaps) throw new Error(`${n} areas exceed the limit ${this.#opts.maxDmaMaps}`);
    const hit = this.#lastHit;
    if (hit && this.#tree.get(hit.iova) !== hit)
      throw new Error("the last-hit cache holds an area not in the tree");
  }
}

function allMapped(slices: AreaSlice[]): boolean {
  for (const s of slices) if (!s.area.mapped) return false;
  return true;
}

function copyOut(slices: AreaSlice[], out: Uint8Array, iova: bigint): void {
  let o = 0;
  try {
    for (const s of slices) {
      for (const piece of s.area.pieces(s.at, s.length)) {
        out.set(piece, o);
        o += piece.length;
      }
    }
  } catch (err) {
    throw toDmaFault(err, iova, out.length);
  }
}

function copyIn(slices: AreaSlice[], data: Uint8Array, iova: bigint): void {
  let o = 0;
  try {
    for (const s of slices) {
      for (const piece of s.area.pieces(s.at, s.length)) {
        piece.set(data.subarray(o, o + piece.length));
        o += piece.length;
      }
    }
  } catch (err) {
    throw toDmaFault(err, iova, data.length);
  }
}
