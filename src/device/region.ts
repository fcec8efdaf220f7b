// A device region: a window of registers or memory the client reaches with REGION_READ/WRITE (and,
// when memory-backed and offered, by mmapping the fd from DEVICE_GET_REGION_INFO).
//
// The framework enforces what a region declares, so a handler never re-checks it: accesses must
// lie inside the region, have one of the declared sizes (when sizes are declared) and go in a
// direction the region allows. A refused access is a VfuError(EINVAL) naming the problem.
//
// OWNERSHIP: a memory-backed region owns its memfd and its mapping; `dispose()` releases both.
import { native } from "../../native/index.ts";
import { VfuError } from "../util/errors.ts";

const EINVAL = 22;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Memory type of a region or mapping (see the README: write-combining). */
export type CacheAttr = "UC" | "WC" | "WB";

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
  mmap?: boolean;
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
      throw new VfuError(5, `region handler returned ${result.length} bytes for a ${size}-byte read`);
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

  constructor(spec: RegionSpec, handlers: RegionHandlers = {}) {
    if (!Number.isSafeInteger(spec.size) || spec.size < 0) {
      throw new Error(`region ${spec.name}: size ${spec.size} is not a byte count`);
    }
    for (const s of spec.accessSizes ?? []) {
      if (![1, 2, 4, 8].includes(s))
        throw new Error(`region ${spec.name}: access size ${s} is not 1, 2, 4 or 8`);
    }
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

  /** The fd a client may mmap, when the region offers one. OWNERSHIP: stays the region's. */
  get mmapFd(): number | null {
    return this.spec.mmap && this.#memfd >= 0 ? this.#memfd : null;
  }

  /** Validate an access; returns the offset as a number. */
  check(offset: bigint, size: number, write: boolean): number {
    const name = this.spec.name;
    if (write ? !this.writable : !this.readable) {
      throw new VfuError(EINVAL, `region ${name} is not ${write ? "writable" : "readable"}`);
    }
    // Region sizes are safe integers, so an offset beyond 2^53 is out of range whatever it is.
    const off = offset <= MAX_SAFE ? Number(offset) : Number.POSITIVE_INFINITY;
    if (offset < 0n || off + size > this.spec.size) {
      throw new VfuError(
        EINVAL,
        `access [${offset}, +${size}) lies outside region ${name} (size ${this.spec.size})`,
      );
    }
    const sizes = this.spec.accessSizes;
    if (sizes && !sizes.includes(size)) {
      throw new VfuError(EINVAL, `region ${name} decodes ${sizes.join("/")}-byte accesses, not ${size}`);
    }
    return off;
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
