// A device region: a window of registers or memory the client reaches with REGION_READ/WRITE (and,
// when memory-backed and offered, by mmapping the fd from DEVICE_GET_REGION_INFO).
//
// The framework enforces what a region declares, so a handler never re-checks it: accesses must
// lie inside the region, have one of the declared sizes (when sizes are declared) and go in a
// direction the region allows. A refused access is a VfuError(Errno.EINVAL) naming the problem.
//
// Memory-backed regions may be offered to the client to mmap, whole or in page-aligned areas
// (`mmapAreas`): the parts outside every area stay trapped (REGION_READ/WRITE), the areas are
// reached both ways, and the device sees the same bytes in `region.memory`. Each area offers one
// or more mmap *views*, each with a cache attribute (UC/WC/WB): WC is a property of a mapping,
// not of the memory, so one backing may be mapped several ways. A view's cookie is the fd offset
// the client passes to mmap; with one memfd per region every view of an area has the same cookie
// (the area's offset) and the attribute says how the client must treat stores through it (see
// the README, "Memory-backed regions and mmap views").
//
// OWNERSHIP: a memory-backed region owns its memfd and its mapping; `dispose()` releases both.

import { native } from "../../native/index.ts";
import { Errno } from "../../protocol/index.ts";
import { VfuError } from "../util/errors.ts";

const PAGE = 4096;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Memory type of a region or mapping (see the README: write-combining). */
export type CacheAttr = "UC" | "WC" | "WB";

export const CACHE_ATTRS: readonly CacheAttr[] = ["UC", "WC", "WB"];

/** A part of a memory-backed region the client may mmap. */
export interface MmapAreaSpec {
  /** Byte offset in the region: a multiple of 4096. */
  offset: number;
  /** Bytes: a non-zero multiple of 4096, inside the region. */
  size: number;
  /** The cache attributes the area may be mapped with, one mmap view each, no repeats; the first
   * is the default view (what a client that knows no views maps). Default: the region's `cache`,
   * else WB. */
  views?: readonly CacheAttr[];
}

/** One way of mapping one area, as described to the client. */
export interface MmapView {
  /** Index of the area (in offset order) this view maps. */
  area: number;
  /** Byte offset in the region and length of what the view maps. */
  offset: number;
  size: number;
  cache: CacheAttr;
  /** The fd offset to pass to mmap for this view (the region info's offset + the area's offset;
   * all views of one area share it: the attribute, not the offset, tells them apart). */
  cookie: number;
  /** The first view of its area: what a client that ignores views maps. */
  isDefault: boolean;
}

export type ReadResult = number | bigint | Uint8Array;

export interface RegionHandlers {
  /** Return `size` bytes at `offset`: a number (little-endian, size ≤ 6), a bigint, or bytes. */
  read?(offset: number, size: number): ReadResult | Promise<ReadResult>;
  /** `data` is a view valid only during the call: copy what you keep. */
  write?(offset: number, data: Uint8Array): void | Promise<void>;
}

export interface RegionSpec {
  index: number;
  name: string;
  /** Bytes; 0 declares an absent region (reported with size 0, every access refused). */
  size: number;
  readable?: boolean;
  writable?: boolean;
  /** Access widths in bytes the hardware decodes; other widths are refused. Omitted: any width. */
  accessSizes?: readonly number[];
  cache?: CacheAttr;
  /** Back the region with a sealed memfd of `size` bytes (page multiple). Accesses without
   * handlers read and write it; `mmap` offers the fd to the client. */
  memory?: boolean;
  /** Offer the memory to the client to mmap (needs `memory`). False: fully trapped. */
  mmap?: boolean;
  /** The parts the client may mmap (needs `mmap`); the rest stays trapped. Default: one area,
   * the whole region. Areas are page-aligned and do not overlap. */
  mmapAreas?: readonly MmapAreaSpec[];
}

/** An mmap area as checked: page-aligned, inside the region, its views in order. */
interface MmapArea {
  offset: number;
  size: number;
  views: readonly CacheAttr[];
}

/** Validate the mmap areas of a spec; throws an Error naming the region and the area. */
function checkAreas(spec: RegionSpec): MmapArea[] {
  const name = spec.name;
  if (spec.mmap && !spec.memory) throw new Error(`region ${name}: mmap needs memory: true`);
  if (spec.mmapAreas !== undefined && !spec.mmap)
    throw new Error(`region ${name}: mmapAreas needs mmap: true`);
  if (!spec.mmap || spec.size === 0) return [];
  const fallback: CacheAttr = spec.cache ?? "WB";
  const given = spec.mmapAreas ?? [{ offset: 0, size: spec.size }];
  if (given.length === 0)
    throw new Error(`region ${name}: mmapAreas is empty (omit it for the whole region)`);
  const areas = given.map((a, i): MmapArea => {
    const what = `region ${name}: mmapAreas[${i}]`;
    if (!Number.isSafeInteger(a.offset) || a.offset < 0 || a.offset % PAGE !== 0)
      throw new Error(`${what}: offset ${a.offset} is not a multiple of ${PAGE}`);
    if (!Number.isSafeInteger(a.size) || a.size <= 0 || a.size % PAGE !== 0)
      throw new Error(`${what}: size ${a.size} is not a non-zero multiple of ${PAGE}`);
    if (a.offset + a.size > spec.size)
      throw new Error(
        `${what}: [0x${a.offset.toString(16)}, +0x${a.size.toString(16)}) ends past the region (size 0x${spec.size.toString(16)})`,
      );
    const views = a.views ?? [fallback];
    if (views.length === 0) throw new Error(`${what}: views is empty`);
    for (const v of views) {
      if (!CACHE_ATTRS.includes(v)) throw new Error(`${what}: view ${String(v)} is not UC, WC or WB`);
    }
    if (new Set(views).size !== views.length) throw new Error(`${what}: views repeat an attribute`);
    return { offset: a.offset, size: a.size, views: [...views] };
  });
  areas.sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < areas.length; i++) {
    const prev = areas[i - 1]!;
    if (areas[i]!.offset < prev.offset + prev.size)
      throw new Error(
        `region ${name}: mmap areas at 0x${prev.offset.toString(16)} and 0x${areas[i]!.offset.toString(16)} overlap`,
      );
  }
  return areas;
}

export function leBytes(value: number | bigint, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let v = BigInt.asUintN(64, typeof value === "bigint" ? value : BigInt(value));
  for (let i = 0; i < size; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** Little-endian value of up to 6 bytes as a number (for register handlers). */
export function leValue(data: Uint8Array): number {
  let v = 0;
  for (let i = Math.min(data.length, 6) - 1; i >= 0; i--) v = v * 256 + data[i]!;
  return v;
}

export function toBytes(result: ReadResult, size: number): Uint8Array {
  if (result instanceof Uint8Array) {
    if (result.length !== size) {
      throw new VfuError(Errno.EIO, `region handler returned ${result.length} bytes for a ${size}-byte read`);
    }
    return result;
  }
  return leBytes(result, size);
}

export class Region {
  readonly spec: RegionSpec;
  #handlers: RegionHandlers;
  #memfd = -1;
  #mapping: ArrayBuffer | null = null;
  /** The backing memory of a memory-backed region (shared with the client's mmap). */
  readonly memory: Uint8Array | null;
  readonly #areas: MmapArea[];

  constructor(spec: RegionSpec, handlers: RegionHandlers = {}) {
    if (!Number.isSafeInteger(spec.size) || spec.size < 0) {
      throw new Error(`region ${spec.name}: size ${spec.size} is not a byte count`);
    }
    for (const s of spec.accessSizes ?? []) {
      if (![1, 2, 4, 8].includes(s))
        throw new Error(`region ${spec.name}: access size ${s} is not 1, 2, 4 or 8`);
    }
    if (spec.cache !== undefined && !CACHE_ATTRS.includes(spec.cache))
      throw new Error(`region ${spec.name}: cache ${String(spec.cache)} is not UC, WC or WB`);
    this.#areas = checkAreas(spec);
    this.spec = spec;
    this.#handlers = handlers;
    if (spec.memory && spec.size > 0) {
      if (spec.size % 4096 !== 0)
        throw new Error(`region ${spec.name}: memory-backed size must be a page multiple`);
      const fd = native.memfdCreate(`vfu-${spec.name}`, spec.size, true);
      try {
        this.#mapping = native.mmap(fd, spec.size, 0, true);
      } catch (err) {
        native.close(fd);
        throw err;
      }
      this.#memfd = fd;
      this.memory = new Uint8Array(this.#mapping);
    } else {
      this.memory = null;
    }
  }

  /** Attach the model's handlers (the device's `create` runs after its regions exist). */
  bind(handlers: RegionHandlers): void {
    this.#handlers = handlers;
  }

  get size(): number {
    return this.spec.size;
  }

  get readable(): boolean {
    return this.spec.size > 0 && this.spec.readable !== false;
  }

  get writable(): boolean {
    return this.spec.size > 0 && this.spec.writable !== false;
  }

  /** The region's cache attribute: the declared one, else WB for memory and UC for registers. */
  get cache(): CacheAttr {
    return this.spec.cache ?? (this.memory ? "WB" : "UC");
  }

  /** Trapped writes go through the write-combining buffer: only when the region declares WC or
   * WB. A region that declares nothing gets every write delivered alone and in order. */
  get combines(): boolean {
    return this.spec.cache === "WC" || this.spec.cache === "WB";
  }

  /** The fd a client may mmap, when the region offers one. OWNERSHIP: stays the region's. */
  get mmapFd(): number | null {
    return this.spec.mmap && this.#memfd >= 0 ? this.#memfd : null;
  }

  /** The areas the client may mmap (offset order; empty when the region offers no mmap). */
  get mmapAreas(): readonly { offset: number; size: number }[] {
    return this.mmapFd === null ? [] : this.#areas;
  }

  /** Every mmap view, area by area, the default view of each area first. */
  mmapViews(): MmapView[] {
    if (this.mmapFd === null) return [];
    return this.#areas.flatMap((a, area) =>
      a.views.map((cache, i) => ({
        area,
        offset: a.offset,
        size: a.size,
        cache,
        cookie: a.offset,
        isDefault: i === 0,
      })),
    );
  }

  /** Validate an access; returns the offset as a number. */
  check(offset: bigint, size: number, write: boolean): number {
    // Region sizes are safe integers, so an offset beyond 2^53 is out of range whatever it is.
    const off = offset <= MAX_SAFE ? Number(offset) : Number.POSITIVE_INFINITY;
    this.#check(off, offset, size, write);
    return off;
  }

  /** `check` for an offset already a number (a non-negative safe integer): the same checks in
   * the same order, the same errors, no bigint. */
  checkAt(offset: number, size: number, write: boolean): void {
    this.#check(offset, offset, size, write);
  }

  #check(off: number, shown: bigint | number, size: number, write: boolean): void {
    const name = this.spec.name;
    if (write ? !this.writable : !this.readable) {
      throw new VfuError(Errno.EINVAL, `region ${name} is not ${write ? "writable" : "readable"}`);
    }
    if (shown < 0 || off + size > this.spec.size) {
      throw new VfuError(
        Errno.EINVAL,
        `access [${shown}, +${size}) lies outside region ${name} (size ${this.spec.size})`,
      );
    }
    const sizes = this.spec.accessSizes;
    if (sizes && !sizes.includes(size)) {
      throw new VfuError(
        Errno.EINVAL,
        `region ${name} decodes ${sizes.join("/")}-byte accesses, not ${size}`,
      );
    }
  }

  read(offset: number, size: number): ReadResult | Promise<ReadResult> {
    const h = this.#handlers;
    if (h.read) return h.read(offset, size);
    if (this.memory) return this.memory.slice(offset, offset + size);
    return new Uint8Array(size);
  }

  write(offset: number, data: Uint8Array): void | Promise<void> {
    const h = this.#handlers;
    if (h.write) return h.write(offset, data);
    if (this.memory) this.memory.set(data, offset);
  }

  dispose(): void {
    if (this.#mapping) native.unmap(this.#mapping);
    this.#mapping = null;
    if (this.#memfd >= 0) native.close(this.#memfd);
    this.#memfd = -1;
  }
}
