// PCI configuration space as hardware keeps it: an array of bytes (256 for conventional PCI, 4096
// for PCI Express) with, per byte, a write mask (bits software may change) and an RW1C mask (bits
// software clears by writing 1). Every register of the header and the capabilities is declared by
// setting its power-on value and those two masks; no register needs code to be read or written.
//
// A client access may have any length at any offset (QEMU reads all 256 or 4096 bytes at once and
// writes 1, 2 or 4 bytes; other clients write whatever they like). A write is applied byte by byte:
// writable bits take the new value, RW1C bits written as 1 clear, every other bit keeps its value,
// so writes to read-only registers are silently ignored, as on hardware. After a write, watchers
// whose range it touched run in address order (BAR-independent side effects: MSI enable, FLR, the
// power state, …); a watcher may return a promise (a reset the device model runs asynchronously).
//
// The device side (`get*`/`set*`) bypasses the masks: it is how the function reports status bits,
// pending bits and power state. `reset()` puts every byte back to its power-on value.
import { Errno } from "../../protocol/index.ts";
import { VfuError } from "../util/errors.ts";

export const CONFIG_SIZE_PCI = 256;
export const CONFIG_SIZE_PCIE = 4096;

/** What a watcher learns about a write that touched its range. */
export interface ConfigWrite {
  /** Start of the watched range. */
  offset: number;
  /** The watched range's bytes before the write (a copy). */
  old: Uint8Array;
}

type Watcher = {
  offset: number;
  length: number;
  fn(w: ConfigWrite): void | Promise<void>;
};

/** Register initialisation: power-on value and masks, each `size` bytes little-endian. */
export interface RegisterInit {
  value?: number;
  /** Bits the client may write (default none: read-only). */
  writable?: number;
  /** Bits the client clears by writing 1. */
  rw1c?: number;
}

export class ConfigSpace {
  readonly size: number;
  readonly #bytes: Uint8Array;
  readonly #powerOn: Uint8Array;
  readonly #wmask: Uint8Array;
  readonly #w1c: Uint8Array;
  readonly #watchers: Watcher[] = [];

  constructor(size: number) {
    if (size !== CONFIG_SIZE_PCI && size !== CONFIG_SIZE_PCIE) {
      throw new Error(`config space size ${size} is neither 256 nor 4096`);
    }
    this.size = size;
    this.#bytes = new Uint8Array(size);
    this.#powerOn = new Uint8Array(size);
    this.#wmask = new Uint8Array(size);
    this.#w1c = new Uint8Array(size);
  }

  // ---- declaration (the function's builder) --------------------------------------------------

  /** Declare a register of `size` bytes: power-on value (also the current value) and masks. */
  define(offset: number, size: 1 | 2 | 4, init: RegisterInit): void {
    this.#range(offset, size);
    for (let i = 0; i < size; i++) {
      const shift = 8 * i;
      const byte = (n: number | undefined) => Number((BigInt(n ?? 0) >> BigInt(shift)) & 0xffn);
      this.#powerOn[offset + i] = byte(init.value);
      this.#bytes[offset + i] = byte(init.value);
      this.#wmask[offset + i] = byte(init.writable);
      this.#w1c[offset + i] = byte(init.rw1c);
    }
  }

  /** Declare a run of bytes at once (vendor capability data). */
  defineBytes(offset: number, value: Uint8Array, writable?: Uint8Array): void {
    this.#range(offset, value.length);
    this.#powerOn.set(value, offset);
    this.#bytes.set(value, offset);
    if (writable) this.#wmask.set(writable.subarray(0, value.length), offset);
  }

  /** Run `fn` after every client write that touches `[offset, offset + length)`. */
  watch(offset: number, length: number, fn: (w: ConfigWrite) => void | Promise<void>): void {
    this.#range(offset, length);
    this.#watchers.push({ offset, length, fn });
    this.#watchers.sort((a, b) => a.offset - b.offset);
  }

  // ---- the client side -----------------------------------------------------------------------

  /** A copy of `length` bytes at `offset`. Throws VfuError(Errno.EINVAL) outside the space. */
  read(offset: number, length: number): Uint8Array {
    this.#check(offset, length);
    return this.#bytes.slice(offset, offset + length);
  }

  /** Apply a client write with the masks, then run the watchers it touched. */
  write(offset: number, data: Uint8Array): void | Promise<void> {
    this.#check(offset, data.length);
    const end = offset + data.length;
    const touched = this.#watchers.filter((w) => w.offset < end && offset < w.offset + w.length);
    const olds = touched.map((w) => this.#bytes.slice(w.offset, w.offset + w.length));
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      const v = data[i]!;
      const keep = this.#bytes[at]! & ~this.#wmask[at]!;
      this.#bytes[at] = (keep | (v & this.#wmask[at]!)) & ~(v & this.#w1c[at]!);
    }
    let chain: Promise<void> | null = null;
    for (let i = 0; i < touched.length; i++) {
      const w = touched[i]!;
      const info = { offset: w.offset, old: olds[i]! };
      if (chain) chain = chain.then(() => w.fn(info));
      else {
        const r = w.fn(info);
        if (r instanceof Promise) chain = r;
      }
    }
    return chain ?? undefined;
  }

  // ---- the device side (no masks) ------------------------------------------------------------

  get8(offset: number): number {
    return this.#bytes[offset]!;
  }

  get16(offset: number): number {
    return this.#bytes[offset]! | (this.#bytes[offset + 1]! << 8);
  }

  get32(offset: number): number {
    return (this.get16(offset) | (this.get16(offset + 2) << 16)) >>> 0;
  }

  set8(offset: number, value: number): void {
    this.#range(offset, 1);
    this.#bytes[offset] = value & 0xff;
  }

  set16(offset: number, value: number): void {
    this.set8(offset, value);
    this.set8(offset + 1, value >>> 8);
  }

  set32(offset: number, value: number): void {
    this.set16(offset, value);
    this.set16(offset + 2, value >>> 16);
  }

  /** Set or clear `bits` of the 16-bit register at `offset`. */
  update16(offset: number, bits: number, on: boolean): void {
    const v = this.get16(offset);
    this.set16(offset, on ? v | bits : v & ~bits);
  }

  /** The whole space (a copy), e.g. for a dump. */
  snapshot(): Uint8Array {
    return this.#bytes.slice();
  }

  /** Every byte back to its power-on value; `keep` lists ranges whose current bytes survive. */
  reset(keep: ReadonlyArray<readonly [offset: number, length: number]> = []): void {
    const saved = keep.map(([o, l]) => [o, this.#bytes.slice(o, o + l)] as const);
    this.#bytes.set(this.#powerOn);
    for (const [o, bytes] of saved) this.#bytes.set(bytes, o);
  }

  #check(offset: number, length: number): void {
    if (!Number.isInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new VfuError(
        Errno.EINVAL,
        `config access [${offset}, +${length}) lies outside the ${this.size}-byte config space`,
      );
    }
  }

  #range(offset: number, length: number): void {
    if (!Number.isInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`config register [${offset}, +${length}) lies outside ${this.size} bytes`);
    }
  }
}
