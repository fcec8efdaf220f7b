// What stands behind an area of the IO address space. Three kinds:
// - "fd": client memory shared with an fd (guest RAM in a memfd, hugetlbfs or shm file). It is
//   mmapped lazily, one window of at most 1 GiB at a time (Node 20 cannot hold a larger external
//   buffer), so the device gets zero-copy views; an access crossing a window edge is split.
//   Unmapping detaches every window, so a stale view reads as empty instead of crashing.
// - "message": client memory without an fd, reached with DMA_READ/DMA_WRITE messages through the
//   session's MessagePort: asynchronous, copy only.
// - "peer": a region of another device served by this process (peer-to-peer DMA), carrying that
//   region's cache attribute. A region with an mmap fd is mapped through a duplicate of that fd
//   (zero-copy, detached on unmap like client memory); a memory-backed region without one is
//   viewed directly in its memory (a stale view is emptied through its handle only); a trapped
//   region (register handlers) is reached through the owning device's read/write, split into the
//   access sizes it declares, in order, which is also how its cache attribute is honoured: UC and
//   WC accesses go through the device model exactly as a client's REGION_WRITEs would (WC and WB
//   writes are write-combined), and the end of each transfer is a flush point.
//
// OWNERSHIP: an fd backing owns its fd (the client's, moved in by DMA_MAP); a peer backing owns
// the duplicate it made. `release()` closes it, never throws, and may be called twice.
import { MAX_MAP_LENGTH, native } from "../../native/index.ts";
import type { CacheAttr } from "../device/region.ts";
import { closeFds } from "../util/fds.ts";
import type { Logger } from "../util/log.ts";
import { inject } from "./fault-injection.ts";
import type { PeerTarget } from "./peers.ts";

export type BackingKind = "fd" | "message" | "peer";

/** How fd-less areas are reached: DMA_READ/DMA_WRITE messages through the session. A transfer
 * stops between two messages once `signal` is aborted (the area is being unmapped). */
export interface MessagePort {
  read(iova: bigint, length: number, signal?: AbortSignal): Promise<Uint8Array>;
  write(iova: bigint, data: Uint8Array, signal?: AbortSignal): Promise<void>;
}

export interface Backing {
  readonly kind: BackingKind;
  readonly cache: CacheAttr;
  /** Zero-copy views can be had (`view`); otherwise only `read`/`write` copy. */
  readonly mappable: boolean;
  /** The fd mapped (-1 when none). OWNERSHIP: the backing's. */
  readonly fd: number;
  /** Bytes from area-relative `at` to the end of the window that holds it (mappable only). */
  span(at: bigint): number;
  /** A view of [at, at+length) lying inside one window (mappable only). Throws on mmap failure. */
  view(at: bigint, length: number): Uint8Array;
  /** Copy out (message and trapped backings). */
  read(at: bigint, length: number, signal: AbortSignal): Promise<Uint8Array>;
  /** Copy in (message and trapped backings). */
  write(at: bigint, data: Uint8Array, signal: AbortSignal): Promise<void>;
  /** Detach every window, close what is owned. Never throws; idempotent. */
  release(log: Logger | null): void;
  describe(): string;
}

const GiB = BigInt(MAX_MAP_LENGTH);
const PAGE = 4096;

/** The mmap granule of an fd: its st_blksize when that is a sane power of two (2 MiB or 1 GiB on
 * hugetlbfs, where mmap offsets must be huge-page aligned), else the page size. */
function granuleOf(blksize: number): number {
  if (blksize > PAGE && blksize <= MAX_MAP_LENGTH / 2 && (blksize & (blksize - 1)) === 0) return blksize;
  return PAGE;
}

/** Lazily mmapped windows over [offset, offset+size) of an fd. */
class Windows {
  readonly #fd: number;
  readonly #offset: bigint;
  readonly #size: bigint;
  readonly #fileSize: bigint;
  readonly #writable: boolean;
  readonly #granule: bigint;
  /** Window length: 1 GiB, less one granule when the offset is not granule-aligned (the mapping
   * then starts below the window and would otherwise exceed 1 GiB). */
  readonly #window: bigint;
  readonly #maps = new Map<number, { ab: ArrayBuffer; delta: number }>();
  #released = false;

  constructor(
    fd: number,
    offset: bigint,
    size: bigint,
    fileSize: number,
    blksize: number,
    writable: boolean,
  ) {
    this.#fd = fd;
    this.#offset = offset;
    this.#size = size;
    this.#fileSize = BigInt(fileSize);
    this.#writable = writable;
    this.#granule = BigInt(granuleOf(blksize));
    this.#window = offset % this.#granule === 0n ? GiB : GiB - this.#granule;
  }

  get fd(): number {
    return this.#fd;
  }

  span(at: bigint): number {
    const w = this.#window;
    const end = (at / w + 1n) * w;
    return Number((end < this.#size ? end : this.#size) - at);
  }

  view(at: bigint, length: number): Uint8Array {
    const w = this.#window;
    const k = Number(at / w);
    let m = this.#maps.get(k);
    if (!m) m = this.#mapWindow(k);
    return new Uint8Array(m.ab, m.delta + Number(at - BigInt(k) * w), length);
  }

  #mapWindow(k: number): { ab: ArrayBuffer; delta: number } {
    if (this.#released) throw new Error("the mapping has been released");
    const w = this.#window;
    const start = BigInt(k) * w;
    const windowLength = this.#size - start < w ? this.#size - start : w;
    const fileOffset = this.#offset + start;
    const base = fileOffset - (fileOffset % this.#granule);
    const delta = fileOffset - base;
    const g = this.#granule;
    let length = ((delta + windowLength + g - 1n) / g) * g;
    if (base + length > this.#fileSize) length = this.#fileSize - base;
    inject("window.mmap");
    const ab = native.mmap(this.#fd, Number(length), Number(base), this.#writable);
    try {
      inject("window.after-mmap");
    } catch (err) {
      native.unmap(ab);
      throw err;
    }
    const m = { ab, delta: Number(delta) };
    this.#maps.set(k, m);
    return m;
  }

  /** How many windows are mapped now (tests, statistics). */
  get mapped(): number {
    return this.#maps.size;
  }

  release(log: Logger | null, ownsFd: boolean): void {
    if (this.#released) return;
    this.#released = true;
    for (const { ab } of this.#maps.values()) {
      try {
        inject("unmap.munmap");
        native.unmap(ab);
      } catch (err) {
        // The window stays mapped (its views stay readable) until the buffer is collected; the
        // rest is still released.
        log?.error(`munmap of a DMA window failed: ${(err as Error).message}`);
      }
    }
    this.#maps.clear();
    if (ownsFd) closeFds([this.#fd]);
  }
}

function notMappable(kind: string): never {
  throw new Error(`${kind} memory has no zero-copy view`);
}

/** Client memory with an fd. OWNERSHIP: takes `fd`. */
export class FdBacking implements Backing {
  readonly kind = "fd";
  readonly cache: CacheAttr = "WB";
  readonly mappable = true;
  readonly offset: bigint;
  readonly #windows: Windows;

  constructor(
    fd: number,
    offset: bigint,
    size: bigint,
    st: { size: number; blksize: number },
    writable: boolean,
  ) {
    this.offset = offset;
    this.#windows = new Windows(fd, offset, size, st.size, st.blksize, writable);
  }

  get fd(): number {
    return this.#windows.fd;
  }

  get windowsMapped(): number {
    return this.#windows.mapped;
  }

  span(at: bigint): number {
    return this.#windows.span(at);
  }

  view(at: bigint, length: number): Uint8Array {
    return this.#windows.view(at, length);
  }

  read(): Promise<Uint8Array> {
    return notMappable("the caller copies fd-backed");
  }

  write(): Promise<void> {
    return notMappable("the caller copies fd-backed");
  }

  release(log: Logger | null): void {
    this.#windows.release(log, true);
  }

  describe(): string {
    return `fd ${this.fd} at offset 0x${this.offset.toString(16)}`;
  }
}

/** Client memory without an fd, reached with messages. */
export class MessageBacking implements Backing {
  readonly kind = "message";
  readonly cache: CacheAttr = "WB";
  readonly mappable = false;
  readonly fd = -1;
  readonly #iova: bigint;
  readonly #port: () => MessagePort;

  /** `port` returns the session's MessagePort or throws when there is none. */
  constructor(iova: bigint, port: () => MessagePort) {
    this.#iova = iova;
    this.#port = port;
  }

  span(): number {
    return 0;
  }

  view(): Uint8Array {
    return notMappable("message-backed");
  }

  read(at: bigint, length: number, signal: AbortSignal): Promise<Uint8Array> {
    return this.#port().read(this.#iova + at, length, signal);
  }

  write(at: bigint, data: Uint8Array, signal: AbortSignal): Promise<void> {
    return this.#port().write(this.#iova + at, data, signal);
  }

  release(): void {}

  describe(): string {
    return "messages (no fd)";
  }
}

/** A region of a device served by this process. OWNERSHIP: owns the duplicate of the region's
 * mmap fd it makes (when the region has one). */
export class PeerBacking implements Backing {
  readonly kind = "peer";
  readonly cache: CacheAttr;
  readonly mappable: boolean;
  readonly peer: PeerTarget;
  readonly #offset: number;
  readonly #size: number;
  readonly #windows: Windows | null;
  readonly #memory: Uint8Array | null;
  readonly #writable: boolean;
  #unsubscribe: (() => void) | null = null;

  /** `dupFd` is a duplicate of the region's mmap fd (moved in), or -1. */
  constructor(peer: PeerTarget, offset: number, size: number, writable: boolean, dupFd: number) {
    this.peer = peer;
    this.cache = peer.cache;
    this.#offset = offset;
    this.#size = size;
    this.#writable = writable;
    const region = peer.region;
    if (dupFd >= 0) {
      this.#windows = new Windows(dupFd, BigInt(offset), BigInt(size), region.size, PAGE, writable);
      this.#memory = null;
    } else {
      this.#windows = null;
      this.#memory = region.memory ? region.memory.subarray(offset, offset + size) : null;
    }
    this.mappable = this.#windows !== null || this.#memory !== null;
  }

  /** Run `fn` when the peer device leaves the registry (until released). */
  watch(fn: () => void): void {
    this.#unsubscribe = this.peer.onGone(fn);
  }

  get fd(): number {
    return this.#windows ? this.#windows.fd : -1;
  }

  span(at: bigint): number {
    if (this.#windows) return this.#windows.span(at);
    return this.#size - Number(at);
  }

  view(at: bigint, length: number): Uint8Array {
    if (this.#windows) return this.#windows.view(at, length);
    if (this.#memory) return this.#memory.subarray(Number(at), Number(at) + length);
    return notMappable(`trapped peer region ${this.peer.name}:${this.peer.index}`);
  }

  async read(at: bigint, length: number): Promise<Uint8Array> {
    this.#requireAlive();
    const out = new Uint8Array(length);
    const base = this.#offset + Number(at);
    for (let done = 0; done < length; ) {
      const n = this.#chunk(base + done, length - done);
      const bytes = await this.peer.device.read(this.peer.index, BigInt(base + done), n);
      out.set(bytes, done);
      done += n;
    }
    return out;
  }

  async write(at: bigint, data: Uint8Array): Promise<void> {
    this.#requireAlive();
    if (!this.#writable) throw new Error("read-only peer mapping");
    const base = this.#offset + Number(at);
    for (let done = 0; done < data.length; ) {
      const n = this.#chunk(base + done, data.length - done);
      // A copy: a region handler may keep what it is given only for the call.
      await this.peer.device.write(this.peer.index, BigInt(base + done), data.slice(done, done + n));
      done += n;
    }
    // One DMA transfer is one batch: into a WC (or WB) region its pieces reach the peer's model
    // combined, delivered when the transfer ends (or earlier, at the peer's own flush points).
    await this.peer.device.flushWrites("batch");
  }

  /** The largest access the region decodes at `offset` that fits `left` bytes. */
  #chunk(offset: number, left: number): number {
    const sizes = this.peer.region.spec.accessSizes;
    if (!sizes || sizes.length === 0) return left;
    let best = 0;
    for (const s of sizes) if (s <= left && offset % s === 0 && s > best) best = s;
    if (best === 0) {
      throw new Error(
        `peer region ${this.peer.name}:${this.peer.index} decodes ${sizes.join("/")}-byte accesses; ` +
          `none fits ${left} bytes at offset 0x${offset.toString(16)}`,
      );
    }
    return best;
  }

  #requireAlive(): void {
    if (!this.peer.alive) throw new Error(`peer device ${this.peer.name} is gone`);
  }

  release(log: Logger | null): void {
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    this.#windows?.release(log, true);
  }

  describe(): string {
    const how = this.#windows ? "mmapped" : this.#memory ? "memory" : "trapped";
    return `peer ${this.peer.name} region ${this.peer.index} +0x${this.#offset.toString(16)} (${how}, ${this.cache})`;
  }
}
