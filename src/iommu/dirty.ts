// Dirty page logging for live migration (DEVICE_FEATURE DMA_LOGGING_START / STOP / REPORT): while
// logging is on, every DMA write by the device marks the IOVA pages it touched. Only device writes
// are logged, whatever backs the area (client memory with or without an fd, or a peer region).
//
// Theory of operation:
// - The log is kept by IOVA page (page = iova >> log2(pageSize)), not by area: like the kernel's
//   device dirty tracking it covers IOVA ranges, so a page dirtied and then unmapped (firmware
//   reprogramming a window during migration) is still reported. START clears it; STOP drops it.
// - Storage is sparse: chunks of 32,768 pages (a 4 KiB bitmap each) in a Map keyed by chunk
//   number, so a log over the whole 64-bit space costs only what has been written. The page size
//   is at least the address space's page size, so page numbers stay below 2^52 (exact numbers).
// - START may name ranges: then only writes inside them are logged (num_ranges 0: everything).
// - A zero-copy view taken for writing can be written at any time until it is released, so its
//   pages are marked when it is taken, when it is released, and at every report (before and after
//   the report clears the log).
// - REPORT(iova, length, pageSize) returns u64 little-endian words, bit k (word k/64, bit k%64)
//   for the page at iova + k·pageSize, and clears what it reported. The report page size may
//   differ from the logging one: a report page is dirty when any logged page overlapping it is;
//   a logged page is cleared only when the report covers it entirely, so nothing dirty is lost.
import { Errno, U64_MAX } from "../../protocol/index.ts";
import { VfuError } from "../util/errors.ts";

/** Ranges a START may name (the kernel's own limit, LOG_MAX_RANGES). */
export const MAX_DIRTY_RANGES = 256;

const CHUNK_BYTES = 4096;
const CHUNK_PAGES = CHUNK_BYTES * 8;

export interface DirtyRange {
  iova: bigint;
  length: bigint;
}

export interface LiveWrite {
  iova: bigint;
  length: number;
}

function isPowerOfTwo(v: bigint): boolean {
  return v > 0n && (v & (v - 1n)) === 0n;
}

function log2(v: bigint): number {
  return v.toString(2).length - 1;
}

/** Set bits [from, to] (inclusive) of a little-endian bitmap. */
function setBits(bytes: Uint8Array, from: number, to: number): void {
  let i = from;
  while (i <= to && (i & 7) !== 0) {
    bytes[i >> 3]! |= 1 << (i & 7);
    i++;
  }
  if (i + 7 <= to) {
    const whole = (to + 1 - i) >> 3;
    bytes.fill(0xff, i >> 3, (i >> 3) + whole);
    i += whole * 8;
  }
  for (; i <= to; i++) bytes[i >> 3]! |= 1 << (i & 7);
}

function clearBits(bytes: Uint8Array, from: number, to: number): void {
  let i = from;
  while (i <= to && (i & 7) !== 0) {
    bytes[i >> 3]! &= ~(1 << (i & 7));
    i++;
  }
  if (i + 7 <= to) {
    const whole = (to + 1 - i) >> 3;
    bytes.fill(0, i >> 3, (i >> 3) + whole);
    i += whole * 8;
  }
  for (; i <= to; i++) bytes[i >> 3]! &= ~(1 << (i & 7));
}

/** Call fn(bit) for every set bit in [from, to]. */
function forEachSetBit(bytes: Uint8Array, from: number, to: number, fn: (bit: number) => void): void {
  for (let byte = from >> 3; byte <= to >> 3; byte++) {
    const v = bytes[byte]!;
    if (v === 0) continue;
    for (let b = 0; b < 8; b++) {
      const bit = byte * 8 + b;
      if (v & (1 << b) && bit >= from && bit <= to) fn(bit);
    }
  }
}

export class DirtyLog {
  readonly #minPageSize: bigint;
  readonly #liveWrites: () => Iterable<LiveWrite>;
  #pageSize: bigint | null = null;
  #shift = 0n;
  #ranges: { iova: bigint; last: bigint }[] = [];
  readonly #chunks = new Map<number, Uint8Array>();

  /** `liveWrites` lists the views taken for writing that are not released yet. */
  constructor(minPageSize: number, liveWrites: () => Iterable<LiveWrite> = () => []) {
    this.#minPageSize = BigInt(minPageSize);
    this.#liveWrites = liveWrites;
  }

  get logging(): boolean {
    return this.#pageSize !== null;
  }

  /** The logging page size, or null when logging is off. */
  get pageSize(): bigint | null {
    return this.#pageSize;
  }

  get ranges(): readonly DirtyRange[] {
    return this.#ranges.map((r) => ({ iova: r.iova, length: r.last - r.iova + 1n }));
  }

  /** Pages marked now (tests, statistics). */
  get dirtyPages(): number {
    let n = 0;
    for (const c of this.#chunks.values()) for (const b of c) if (b) n += popcount8(b);
    return n;
  }

  /**
   * Start logging (no ranges: every write). Returns the page size chosen: the one asked for, or
   * the address space's page size when that is larger. VfuError Errno.EINVAL for a page size that is
   * not a power of two, an empty or wrapping range, overlapping ranges; Errno.E2BIG for more than
   * MAX_DIRTY_RANGES ranges; Errno.EBUSY when logging is on already.
   */
  start(pageSize: bigint, ranges: readonly DirtyRange[] = []): bigint {
    if (this.logging) throw new VfuError(Errno.EBUSY, "dirty logging is on already; stop it first");
    if (!isPowerOfTwo(pageSize))
      throw new VfuError(Errno.EINVAL, `dirty logging page size ${pageSize} is not a power of two`);
    if (ranges.length > MAX_DIRTY_RANGES) {
      throw new VfuError(Errno.E2BIG, `${ranges.length} dirty logging ranges (at most ${MAX_DIRTY_RANGES})`);
    }
    const sorted: { iova: bigint; last: bigint }[] = [];
    for (const r of ranges) {
      if (r.length === 0n)
        throw new VfuError(Errno.EINVAL, `dirty logging range at 0x${r.iova.toString(16)} is empty`);
      if (r.iova > U64_MAX - (r.length - 1n))
        throw new VfuError(
          Errno.EINVAL,
          `dirty logging range 0x${r.iova.toString(16)}+0x${r.length.toString(16)} wraps`,
        );
      sorted.push({ iova: r.iova, last: r.iova + r.length - 1n });
    }
    sorted.sort((a, b) => (a.iova < b.iova ? -1 : a.iova > b.iova ? 1 : 0));
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]!.iova <= sorted[i - 1]!.last)
        throw new VfuError(Errno.EINVAL, "dirty logging ranges overlap");
    }
    const chosen = pageSize < this.#minPageSize ? this.#minPageSize : pageSize;
    this.#chunks.clear();
    this.#ranges = sorted;
    this.#shift = BigInt(log2(chosen));
    this.#pageSize = chosen;
    this.#markLive();
    return chosen;
  }

  /** Stop logging and forget what was logged. Idempotent. */
  stop(): void {
    this.#pageSize = null;
    this.#ranges = [];
    this.#chunks.clear();
  }

  /** A device write of [iova, iova+length) happened (no-op while logging is off). */
  mark(iova: bigint, length: number): void {
    if (this.#pageSize === null || length <= 0) return;
    const last = iova + BigInt(length - 1);
    if (this.#ranges.length === 0) {
      this.#setPages(iova, last);
      return;
    }
    for (const r of this.#ranges) {
      if (r.iova > last) break;
      if (r.last < iova) continue;
      this.#setPages(iova > r.iova ? iova : r.iova, last < r.last ? last : r.last);
    }
  }

  #setPages(iova: bigint, last: bigint): void {
    const p0 = Number(iova >> this.#shift);
    const p1 = Number(last >> this.#shift);
    for (let p = p0; p <= p1; ) {
      const c = Math.floor(p / CHUNK_PAGES);
      let chunk = this.#chunks.get(c);
      if (!chunk) {
        chunk = new Uint8Array(CHUNK_BYTES);
        this.#chunks.set(c, chunk);
      }
      const first = p - c * CHUNK_PAGES;
      const lastBit = Math.min(p1 - c * CHUNK_PAGES, CHUNK_PAGES - 1);
      setBits(chunk, first, lastBit);
      p = c * CHUNK_PAGES + lastBit + 1;
    }
  }

  #markLive(): void {
    for (const w of this.#liveWrites()) this.mark(w.iova, w.length);
  }

  /** Bytes of the bitmap for `length` bytes of `pageSize` pages: whole u64 words. */
  static bitmapBytes(length: bigint, pageSize: bigint): bigint {
    const pages = (length + pageSize - 1n) / pageSize;
    return ((pages + 63n) / 64n) * 8n;
  }

  /**
   * The dirty bitmap of [iova, iova+length) in pages of `pageSize`, cleared as it is read.
   * VfuError Errno.EINVAL when logging is off, for a page size not a power of two, an empty or wrapping
   * range; Errno.E2BIG when the bitmap would exceed `maxBytes`.
   */
  report(iova: bigint, length: bigint, pageSize: bigint, maxBytes = 64 * 1024 * 1024): Uint8Array {
    if (this.#pageSize === null) throw new VfuError(Errno.EINVAL, "dirty logging is not on");
    if (!isPowerOfTwo(pageSize))
      throw new VfuError(Errno.EINVAL, `report page size ${pageSize} is not a power of two`);
    if (length === 0n) throw new VfuError(Errno.EINVAL, "dirty report of an empty range");
    if (iova > U64_MAX - (length - 1n))
      throw new VfuError(
        Errno.EINVAL,
        `dirty report range 0x${iova.toString(16)}+0x${length.toString(16)} wraps`,
      );
    const bytes = DirtyLog.bitmapBytes(length, pageSize);
    if (bytes > BigInt(maxBytes))
      throw new VfuError(Errno.E2BIG, `a ${bytes}-byte dirty bitmap exceeds ${maxBytes} bytes`);
    const out = new Uint8Array(Number(bytes));
    this.#markLive();
    const p = this.#pageSize;
    const shift = this.#shift;
    const last = iova + length - 1n;
    const t0 = Number(iova >> shift);
    const t1 = Number(last >> shift);
    // Logged pages entirely inside the range: the ones a report may clear.
    const full0 = Number((iova + p - 1n) >> shift);
    const full1 = Number(((last + 1n) >> shift) - 1n);
    const fast = pageSize === p && iova % p === 0n;
    const visit = (t: number): void => {
      if (fast) {
        const k = t - t0;
        out[k >> 3]! |= 1 << (k & 7);
        return;
      }
      const lo = BigInt(t) << shift;
      const hi = lo + p - 1n;
      const k0 = Number(((lo > iova ? lo : iova) - iova) / pageSize);
      const k1 = Number(((hi < last ? hi : last) - iova) / pageSize);
      setBits(out, k0, k1);
    };
    for (const [c, chunk] of this.#chunksIn(t0, t1)) {
      const base = c * CHUNK_PAGES;
      const from = Math.max(t0, base) - base;
      const to = Math.min(t1, base + CHUNK_PAGES - 1) - base;
      forEachSetBit(chunk, from, to, (bit) => visit(base + bit));
      const c0 = Math.max(full0, base) - base;
      const c1 = Math.min(full1, base + CHUNK_PAGES - 1) - base;
      if (c0 <= c1) {
        clearBits(chunk, c0, c1);
        if (c0 === 0 && c1 === CHUNK_PAGES - 1) this.#chunks.delete(c);
        else if (chunk.every((b) => b === 0)) this.#chunks.delete(c);
      }
    }
    this.#markLive();
    return out;
  }

  /** The chunks that may hold pages t0..t1, cheapest way round. */
  #chunksIn(t0: number, t1: number): [number, Uint8Array][] {
    const c0 = Math.floor(t0 / CHUNK_PAGES);
    const c1 = Math.floor(t1 / CHUNK_PAGES);
    const out: [number, Uint8Array][] = [];
    if (c1 - c0 + 1 > this.#chunks.size) {
      for (const [c, chunk] of this.#chunks) if (c >= c0 && c <= c1) out.push([c, chunk]);
      out.sort((a, b) => a[0] - b[0]);
    } else {
      for (let c = c0; c <= c1; c++) {
        const chunk = this.#chunks.get(c);
        if (chunk) out.push([c, chunk]);
      }
    }
    return out;
  }
}

function popcount8(b: number): number {
  let n = 0;
  for (let v = b; v; v &= v - 1) n++;
  return n;
}
