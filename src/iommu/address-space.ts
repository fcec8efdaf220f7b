// The client's IO address space, built from DMA_MAP and DMA_UNMAP: non-overlapping areas
// `[iova, last]` (last inclusive, so an area may end at 2^64-1), each with permissions and a
// backing:
// - an fd (guest RAM shared by the client): mmapped lazily in windows of at most 1 GiB;
// - no fd: reached through DMA_READ/DMA_WRITE messages to the client (`MessagePort`).
//
// Areas are kept sorted by iova in an array searched by bisection, with a last-hit cache in
// front for repeated DMA to the same area. All address arithmetic is bigint and overflow-checked.
//
// OWNERSHIP: `map` takes the fd in every case: on success it moves into the area (closed by
// unmap, unmapAll or dispose); on failure it is closed before the error is thrown.
import { MAX_MAP_LENGTH, native } from "../../native/index.ts";
import { DmaMapFlag } from "../../protocol/index.ts";
import { VfuError } from "../util/errors.ts";
import { closeFds } from "../util/fds.ts";
import { DmaFault } from "./faults.ts";

const EINVAL = 22;
const ENOENT = 2;
const EEXIST = 17;
const ENOSPC = 28;
const U64_MAX = (1n << 64n) - 1n;
const WINDOW = BigInt(MAX_MAP_LENGTH);

export interface MapRequest {
  iova: bigint;
  size: bigint;
  flags: number;
  /** -1 for a message-backed area. */
  fd: number;
  offset: bigint;
}

/** How fd-less areas are reached: DMA_READ/DMA_WRITE messages through the session. */
export interface MessagePort {
  read(iova: bigint, length: number): Promise<Uint8Array>;
  write(iova: bigint, data: Uint8Array): Promise<void>;
}

export class Area {
  readonly iova: bigint;
  readonly last: bigint;
  readonly flags: number;
  readonly fd: number;
  readonly offset: bigint;
  readonly #windows = new Map<number, ArrayBuffer>();
  #released = false;

  constructor(req: MapRequest) {
    this.iova = req.iova;
    this.last = req.iova + req.size - 1n;
    this.flags = req.flags;
    this.fd = req.fd;
    this.offset = req.offset;
  }

  get size(): bigint {
    return this.last - this.iova + 1n;
  }

  get readable(): boolean {
    return (this.flags & DmaMapFlag.READ) !== 0;
  }

  get writable(): boolean {
    return (this.flags & DmaMapFlag.WRITE) !== 0;
  }

  get mapped(): boolean {
    return this.fd >= 0;
  }

  /** A view of `length` bytes at `at` (area-relative) that does not cross a window edge. */
  view(at: bigint, length: number): Uint8Array {
    const k = Number(at / WINDOW);
    let ab = this.#windows.get(k);
    if (!ab) {
      const start = BigInt(k) * WINDOW;
      const windowLength = Number(this.size - start < WINDOW ? this.size - start : WINDOW);
      ab = native.mmap(this.fd, windowLength, Number(this.offset + start), this.writable);
      this.#windows.set(k, ab);
    }
    const within = Number(at - BigInt(k) * WINDOW);
    return new Uint8Array(ab, within, length);
  }

  /** Split [at, at+length) (area-relative) at window edges. */
  *pieces(at: bigint, length: number): Generator<Uint8Array> {
    let pos = at;
    let left = length;
    while (left > 0) {
      const toEdge = Number(WINDOW - (pos % WINDOW));
      const n = Math.min(left, toEdge);
      yield this.view(pos, n);
      pos += BigInt(n);
      left -= n;
    }
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    for (const ab of this.#windows.values()) native.unmap(ab);
    this.#windows.clear();
    if (this.fd >= 0) closeFds([this.fd]);
  }
}

export interface AddressSpaceLimits {
  maxDmaMaps: number;
  pgsize: number;
}

export class AddressSpace {
  readonly #areas: Area[] = [];
  readonly #limits: AddressSpaceLimits;
  #lastHit: Area | null = null;
  messages: MessagePort | null = null;

  constructor(limits: AddressSpaceLimits) {
    this.#limits = limits;
  }

  get count(): number {
    return this.#areas.length;
  }

  areas(): readonly Area[] {
    return this.#areas;
  }

  map(req: MapRequest): Area {
    try {
      return this.#map(req);
    } catch (err) {
      if (req.fd >= 0) closeFds([req.fd]);
      throw err;
    }
  }

  #map(req: MapRequest): Area {
    const { iova, size, flags, offset } = req;
    const pg = BigInt(this.#limits.pgsize);
    if ((flags & ~(DmaMapFlag.READ | DmaMapFlag.WRITE)) !== 0 || (flags & DmaMapFlag.READ) === 0) {
      throw new VfuError(
        EINVAL,
        `DMA_MAP flags 0x${flags.toString(16)}: READ is required, only READ|WRITE are known`,
      );
    }
    if (size === 0n) throw new VfuError(EINVAL, "DMA_MAP of size 0");
    if (iova > U64_MAX - (size - 1n)) {
      throw new VfuError(
        EINVAL,
        `DMA_MAP iova 0x${iova.toString(16)} + size 0x${size.toString(16)} wraps past 2^64`,
      );
    }
    if (iova % pg !== 0n || size % pg !== 0n || offset % pg !== 0n) {
      throw new VfuError(EINVAL, `DMA_MAP iova, size and offset must be multiples of the page size ${pg}`);
    }
    if (this.#areas.length >= this.#limits.maxDmaMaps) {
      throw new VfuError(ENOSPC, `already ${this.#areas.length} DMA maps (limit ${this.#limits.maxDmaMaps})`);
    }
    const last = iova + size - 1n;
    const i = this.#lowerBound(iova);
    const prev = this.#areas[i - 1];
    const next = this.#areas[i];
    if ((prev && prev.last >= iova) || (next && next.iova <= last)) {
      const other = prev && prev.last >= iova ? prev : next!;
      throw new VfuError(
        EEXIST,
        `DMA_MAP [0x${iova.toString(16)}, 0x${last.toString(16)}] overlaps [0x${other.iova.toString(16)}, 0x${other.last.toString(16)}]`,
      );
    }
    if (req.fd >= 0) {
      const st = native.fstat(req.fd);
      if (!st.isRegular)
        throw new VfuError(EINVAL, "DMA_MAP fd is not mappable memory (not a regular file or memfd)");
      if (BigInt(st.size) < offset + size) {
        throw new VfuError(
          EINVAL,
          `DMA_MAP fd holds ${st.size} bytes, less than offset 0x${offset.toString(16)} + size 0x${size.toString(16)}`,
        );
      }
    }
    const area = new Area(req);
    this.#areas.splice(i, 0, area);
    return area;
  }

  /** Remove exactly the area [iova, iova+size). */
  unmap(iova: bigint, size: bigint): Area {
    const i = this.#lowerBound(iova);
    const area = this.#areas[i];
    if (!area || area.iova !== iova || area.size !== size) {
      throw new VfuError(ENOENT, `no DMA map is exactly [0x${iova.toString(16)}, +0x${size.toString(16)})`);
    }
    this.#areas.splice(i, 1);
    if (this.#lastHit === area) this.#lastHit = null;
    area.release();
    return area;
  }

  unmapAll(): void {
    for (const a of this.#areas) a.release();
    this.#areas.length = 0;
    this.#lastHit = null;
  }

  /** The area containing `iova`, or null. */
  find(iova: bigint): Area | null {
    const hit = this.#lastHit;
    if (hit && hit.iova <= iova && iova <= hit.last) return hit;
    const i = this.#lowerBound(iova + 1n) - 1;
    const a = this.#areas[i];
    if (a && a.iova <= iova && iova <= a.last) {
      this.#lastHit = a;
      return a;
    }
    return null;
  }

  /** Split [iova, iova+length) into per-area segments, checking permissions. */
  translate(iova: bigint, length: number, write: boolean): { area: Area; at: bigint; length: number }[] {
    if (length < 0) throw new DmaFault("out-of-range", iova, length, "negative length");
    if (length === 0) return [];
    if (iova > U64_MAX - BigInt(length - 1))
      throw new DmaFault("out-of-range", iova, length, "range wraps past 2^64");
    const out: { area: Area; at: bigint; length: number }[] = [];
    let pos = iova;
    let left = length;
    while (left > 0) {
      const area = this.find(pos);
      if (!area) throw new DmaFault("unmapped", iova, length, `0x${pos.toString(16)} is not mapped`);
      if (write ? !area.writable : !area.readable) {
        throw new DmaFault(
          "permission",
          iova,
          length,
          `area at 0x${area.iova.toString(16)} is not ${write ? "writable" : "readable"}`,
        );
      }
      const avail = area.last - pos + 1n;
      const n = avail < BigInt(left) ? Number(avail) : left;
      out.push({ area, at: pos - area.iova, length: n });
      pos += BigInt(n);
      left -= n;
    }
    return out;
  }

  async read(iova: bigint, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    let o = 0;
    for (const seg of this.translate(iova, length, false)) {
      if (seg.area.mapped) {
        for (const piece of seg.area.pieces(seg.at, seg.length)) {
          out.set(piece, o);
          o += piece.length;
        }
      } else {
        out.set(
          await this.#port(seg.area.iova + seg.at, seg.length).read(seg.area.iova + seg.at, seg.length),
          o,
        );
        o += seg.length;
      }
    }
    return out;
  }

  async write(iova: bigint, data: Uint8Array): Promise<void> {
    let o = 0;
    for (const seg of this.translate(iova, data.length, true)) {
      if (seg.area.mapped) {
        for (const piece of seg.area.pieces(seg.at, seg.length)) {
          piece.set(data.subarray(o, o + piece.length));
          o += piece.length;
        }
      } else {
        await this.#port(seg.area.iova + seg.at, seg.length).write(
          seg.area.iova + seg.at,
          data.subarray(o, o + seg.length),
        );
        o += seg.length;
      }
    }
  }

  #port(iova: bigint, length: number): MessagePort {
    if (!this.messages) throw new DmaFault("no-client", iova, length, "no client to serve message-based DMA");
    return this.messages;
  }

  /** First index whose area starts at or after `iova`. */
  #lowerBound(iova: bigint): number {
    let lo = 0;
    let hi = this.#areas.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#areas[mid]!.iova < iova) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
