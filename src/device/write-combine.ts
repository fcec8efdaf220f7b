// The write-combining buffer: trapped writes to a WC (or WB) region are gathered here and reach
// the device model as fewer, larger writes, the way a CPU's write-combining buffer turns a burst of
// stores to a framebuffer into bus bursts.
//
// One buffer per device holds one contiguous run of bytes in one region. A write that touches or
// overlaps the run (just before, inside, or just after it) merges into it, later bytes winning; any
// other write (another region, a gap) is not combinable and the device flushes the run first. The
// run never grows past `WC_BUFFER_BYTES`: a write that would make it longer flushes first, and a run
// that reaches exactly the limit is flushed at once ("full"). The device (device.ts) decides when
// to flush; the reasons are listed in `FlushReason` and in the README (write-combining).
//
// This file holds bytes only: it never calls a handler, so it has no ordering of its own to keep.
import type { Region } from "./region.ts";

/** Bytes one device's buffer holds before it is delivered. A page: a framebuffer fill then costs
 * one handler call per 4 KiB instead of one per store (the per-call overhead is amortised over
 * 4096 bytes already), the latency of a write becoming visible stays bounded, and the memory held
 * per device is small. A single write longer than this is delivered on its own, uncombined. */
export const WC_BUFFER_BYTES = 4096;

/** Why a run was delivered (counted per device; see the README for each point). */
export type FlushReason =
  | "gap" // the next write did not touch the run (or went to another region)
  | "full" // the run reached WC_BUFFER_BYTES
  | "read" // a read of the run's region
  | "uncached" // an access to a UC region (config space included) of the same device
  | "irq" // an interrupt raised by the model, or SET_IRQS from the client
  | "fence" // ctx.fence() / device.fence()
  | "batch" // the end of the batch of messages at hand (one transport read), or of a peer DMA transfer
  | "reset"; // DEVICE_RESET (flushed before the reset runs)

export interface CombinedWrite {
  region: Region;
  offset: number;
  data: Uint8Array;
}

export class WriteCombiner {
  readonly limit: number;
  #buf: Uint8Array;
  #region: Region | null = null;
  #start = 0;
  #end = 0;

  constructor(limit = WC_BUFFER_BYTES) {
    if (!Number.isSafeInteger(limit) || limit < 8)
      throw new RangeError(`write-combining limit ${limit} is under 8 bytes`);
    this.limit = limit;
    this.#buf = new Uint8Array(limit);
  }

  /** The pending run's region, or null when the buffer is empty. */
  get region(): Region | null {
    return this.#region;
  }

  /** Bytes pending. */
  get length(): number {
    return this.#end - this.#start;
  }

  /** Whether `[offset, offset + length)` of `region` can join the run without passing the limit.
   * Always true for an empty buffer and a write no longer than the limit. */
  accepts(region: Region, offset: number, length: number): boolean {
    if (length > this.limit) return false;
    if (this.#region === null) return true;
    if (region !== this.#region) return false;
    const end = offset + length;
    if (offset > this.#end || end < this.#start) return false;
    return Math.max(end, this.#end) - Math.min(offset, this.#start) <= this.limit;
  }

  /** Merge a write that `accepts` allowed. Returns true when the run is now full. The bytes are
   * copied: `data` may be reused by the caller. */
  add(region: Region, offset: number, data: Uint8Array): boolean {
    return this.addFrom(region, offset, data, 0, data.length);
  }

  /** `add(region, offset, src.subarray(start, start + count))` without making the view: the hot
   * path copies a store straight out of the message that carried it. */
  addFrom(region: Region, offset: number, src: Uint8Array, start: number, count: number): boolean {
    const end = offset + count;
    let at: number;
    if (this.#region === null) {
      this.#region = region;
      this.#start = offset;
      this.#end = end;
      at = 0;
    } else {
      if (offset < this.#start) {
        // Growing downwards (a descending fill): move the run up to make room in front.
        const shift = this.#start - offset;
        this.#buf.copyWithin(shift, 0, this.#end - this.#start);
        this.#start = offset;
      }
      at = offset - this.#start;
      if (end > this.#end) this.#end = end;
    }
    const buf = this.#buf;
    if (count <= 16) {
      // A store of a few bytes: a loop beats making a view for TypedArray.set.
      for (let i = 0; i < count; i++) buf[at + i] = src[start + i]!;
    } else {
      buf.set(start === 0 && count === src.length ? src : src.subarray(start, start + count), at);
    }
    return this.#end - this.#start >= this.limit;
  }

  /** The hot path of a fill: append stores of `width` bytes, the k-th at `offset + k·width` with
   * its bytes at `src[start + k·stride]`, while they extend the run exactly at its end and fit
   * under the limit (an empty buffer starts a run at `offset`). Returns how many it took (0 when
   * the first does not extend the run: another region, a gap, an overlap); the caller flushes
   * ("full") when `length` reached the limit. `width` must be 1..limit. */
  appendRun(
    region: Region,
    offset: number,
    src: Uint8Array,
    start: number,
    width: number,
    stride: number,
    n: number,
  ): number {
    if (this.#region === null) {
      this.#region = region;
      this.#start = this.#end = offset;
    } else if (region !== this.#region || offset !== this.#end) return 0;
    let at = this.#end - this.#start;
    const k = Math.min(n, Math.floor((this.limit - at) / width));
    const buf = this.#buf;
    for (let i = 0, from = start; i < k; i++, from += stride) {
      for (let b = 0; b < width; b++) buf[at++] = src[from + b]!;
    }
    this.#end += k * width;
    return k;
  }

  /** Remove and return the run (a copy the handler may keep), or null when empty. */
  take(): CombinedWrite | null {
    const region = this.#region;
    if (region === null) return null;
    const data = this.#buf.slice(0, this.#end - this.#start);
    const offset = this.#start;
    this.#region = null;
    this.#start = this.#end = 0;
    return { region, offset, data };
  }
}
