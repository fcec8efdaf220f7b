// MSI capability (ID 0x05): 32- or 64-bit message address, 1-32 vectors (Multiple Message
// Capable), optional per-vector masking with Mask and Pending bits.
// - The driver enables MSI and chooses how many vectors it allocates (Multiple Message Enable); a
//   vector the device raises beyond that number is delivered on the last allocated vector.
// - With per-vector masking, a vector raised while its Mask bit is set latches its Pending bit
//   (read-only to software) instead of firing; clearing the Mask bit (a config write) fires the
//   latched vector and clears its Pending bit.
// - The message itself (address/data) is the client's business: delivery is the eventfd the
//   client bound to the vector with SET_IRQS (index MSI). QEMU answers guest reads of this
//   capability from its own copy but forwards every write, so enable and mask state here follow
//   the guest.
import { MsiCap, MsiControl } from "../../../protocol/index.ts";
import type { ConfigSpace } from "../config-space.ts";

export { MsiCap, MsiControl };

export interface MsiSpec {
  /** Vectors the function can use (Multiple Message Capable): 1, 2, 4, 8, 16 or 32. */
  vectors: number;
  /** 64-bit message address (default true). */
  is64?: boolean;
  /** Mask and Pending bits per vector (default false). */
  perVectorMask?: boolean;
  /** Pin the capability at this config offset. */
  offset?: number;
}

export function msiCapSize(spec: MsiSpec): number {
  const is64 = spec.is64 !== false;
  if (spec.perVectorMask) return is64 ? 0x18 : 0x14;
  return is64 ? 0x10 : 0x0c; // 14 or 10 bytes used, rounded to the 4-byte grid
}

export function checkMsi(spec: MsiSpec): void {
  if (![1, 2, 4, 8, 16, 32].includes(spec.vectors))
    throw new Error(`capabilities.msi.vectors ${spec.vectors} must be 1, 2, 4, 8, 16 or 32`);
}

export class Msi {
  readonly offset: number;
  readonly vectors: number;
  readonly #cs: ConfigSpace;
  readonly #maskAt: number;
  readonly #fire: (vector: number) => void;
  /** Raises latched in Pending while masked. */
  latched = 0;

  constructor(cs: ConfigSpace, offset: number, next: number, spec: MsiSpec, fire: (vector: number) => void) {
    this.offset = offset;
    this.vectors = spec.vectors;
    this.#cs = cs;
    this.#fire = fire;
    const is64 = spec.is64 !== false;
    const pvm = spec.perVectorMask === true;
    const mmc = Math.log2(spec.vectors);
    let control = mmc << 1;
    if (is64) control |= MsiControl.ADDR64;
    if (pvm) control |= MsiControl.PER_VECTOR_MASK;
    cs.define(offset, 1, { value: MsiCap.ID });
    cs.define(offset + 1, 1, { value: next });
    cs.define(offset + MsiCap.CONTROL, 2, {
      value: control,
      writable: MsiControl.ENABLE | MsiControl.MME_MASK,
    });
    cs.define(offset + MsiCap.ADDRESS_LO, 4, { value: 0, writable: 0xffff_fffc });
    if (is64) cs.define(offset + MsiCap.ADDRESS_HI, 4, { value: 0, writable: 0xffff_ffff });
    cs.define(offset + (is64 ? MsiCap.DATA_64 : MsiCap.DATA_32), 2, { value: 0, writable: 0xffff });
    this.#maskAt = pvm ? offset + (is64 ? MsiCap.MASK_64 : MsiCap.MASK_32) : -1;
    if (pvm) {
      const all = spec.vectors === 32 ? 0xffff_ffff : (1 << spec.vectors) - 1;
      cs.define(this.#maskAt, 4, { value: 0, writable: all });
      cs.define(this.#maskAt + 4, 4, { value: 0 });
    }
    // Enabling MSI or unmasking a vector may release latched vectors.
    cs.watch(offset + MsiCap.CONTROL, 2, () => this.#deliverPending());
    if (pvm) cs.watch(this.#maskAt, 4, () => this.#deliverPending());
  }

  get enabled(): boolean {
    return (this.#cs.get16(this.offset + MsiCap.CONTROL) & MsiControl.ENABLE) !== 0;
  }

  /** Vectors the driver allocated (Multiple Message Enable, at most the capable number). */
  get allocated(): number {
    const mme = (this.#cs.get16(this.offset + MsiCap.CONTROL) & MsiControl.MME_MASK) >> 4;
    return Math.min(1 << mme, this.vectors);
  }

  get maskBits(): number {
    return this.#maskAt < 0 ? 0 : this.#cs.get32(this.#maskAt);
  }

  get pendingBits(): number {
    return this.#maskAt < 0 ? 0 : this.#cs.get32(this.#maskAt + 4);
  }

  /** Send `vector` (folded onto the allocated ones), or latch it while masked. */
  raise(vector: number): void {
    const v = Math.min(vector, this.allocated - 1);
    if ((this.maskBits >>> v) & 1) {
      this.#setPending(v, true);
      this.latched++;
      return;
    }
    this.#fire(v);
  }

  /** The condition behind `vector` went away: withdraw a latched message. */
  withdraw(vector: number): void {
    if (this.#maskAt >= 0) this.#setPending(Math.min(vector, this.allocated - 1), false);
  }

  #setPending(v: number, on: boolean): void {
    const at = this.#maskAt + 4;
    const bit = 2 ** v;
    const cur = this.#cs.get32(at);
    this.#cs.set32(at, on ? (cur | bit) >>> 0 : (cur & ~bit) >>> 0);
  }

  #deliverPending(): void {
    if (!this.enabled || this.#maskAt < 0) return;
    const ready = (this.pendingBits & ~this.maskBits) >>> 0;
    for (let v = 0; v < 32; v++) {
      if ((ready >>> v) & 1) {
        this.#setPending(v, false);
        this.#fire(v);
      }
    }
  }
}
