// MSI-X capability (ID 0x11): up to 2048 vectors whose table (16 bytes per vector: address, data,
// vector control) and Pending Bit Array live inside memory BARs. The framework serves the table
// and the PBA; the rest of those BARs goes to the device model.
// - A vector is masked when the Function Mask bit (Message Control) or its own Mask bit (vector
//   control bit 0) is set. Raising a masked vector sets its PBA bit; when it becomes unmasked (a
//   table write, a Message Control write) the pending vector fires and its PBA bit clears.
// - QEMU never sends table accesses: it overlays its own emulated table on the BAR and masks a
//   vector by re-binding its eventfd. So the per-vector Mask bits here (masked at reset, as the
//   specification says) are honoured only once the client has accessed the table since the last
//   reset; a client that never touches the table (QEMU) leaves per-vector masking to itself, and
//   the Function Mask (which QEMU does forward) still applies.
// - Table accesses may have any width and alignment inside the table; PBA writes are ignored.
// - Message address/data are the client's business: delivery is the eventfd bound to the vector
//   with SET_IRQS (index MSIX).
import { MSIX_ENTRY_MASKED, MsixCap, MsixControl, MsixEntry } from "../../../protocol/index.ts";
import type { ConfigSpace } from "../config-space.ts";

export { MSIX_ENTRY_MASKED, MsixCap, MsixControl, MsixEntry };

export interface MsixSpec {
  /** Table size: 1-2048 vectors. */
  vectors: number;
  /** BAR holding the table (a memory BAR). */
  bar: number;
  /** Table offset in that BAR (8-byte aligned, default 0). */
  tableOffset?: number;
  /** BAR holding the PBA (default: the table's). */
  pbaBar?: number;
  /** PBA offset (8-byte aligned; default: right after the table, 8-byte aligned). */
  pbaOffset?: number;
  /** Pin the capability at this config offset. */
  offset?: number;
}

export interface MsixLayout {
  vectors: number;
  tableBar: number;
  tableOffset: number;
  tableSize: number;
  pbaBar: number;
  pbaOffset: number;
  pbaSize: number;
}

/** Validate against the BARs (size by index; memory BARs only). */
export function layoutMsix(
  spec: MsixSpec,
  bar: (index: number) => { size: number; kind: "memory" | "io"; mmap: boolean } | undefined,
): MsixLayout {
  const n = spec.vectors;
  if (!Number.isInteger(n) || n < 1 || n > 2048)
    throw new Error(`capabilities.msix.vectors ${n} must be 1-2048`);
  const tableSize = n * MsixEntry.SIZE;
  const pbaSize = Math.ceil(n / 64) * 8;
  const tableOffset = spec.tableOffset ?? 0;
  const pbaBar = spec.pbaBar ?? spec.bar;
  const pbaOffset = spec.pbaOffset ?? (pbaBar === spec.bar ? (tableOffset + tableSize + 7) & ~7 : 0);
  const place = (what: string, index: number, offset: number, size: number) => {
    const b = bar(index);
    if (!b) throw new Error(`capabilities.msix: the ${what} BAR ${index} is not a declared BAR`);
    if (b.kind !== "memory")
      throw new Error(`capabilities.msix: the ${what} BAR ${index} must be a memory BAR, not I/O`);
    if (b.mmap)
      throw new Error(
        `capabilities.msix: BAR ${index} holds the MSI-X ${what} and cannot be mmap-capable ` +
          "(the framework must see every access to it)",
      );
    if (!Number.isInteger(offset) || offset < 0 || offset % 8 !== 0)
      throw new Error(`capabilities.msix: the ${what} offset ${offset} must be 8-byte aligned`);
    if (offset + size > b.size)
      throw new Error(
        `capabilities.msix: the ${what} [0x${offset.toString(16)}, +${size}) does not fit in BAR ${index} ` +
          `of ${b.size} bytes`,
      );
  };
  place("table", spec.bar, tableOffset, tableSize);
  place("PBA", pbaBar, pbaOffset, pbaSize);
  if (pbaBar === spec.bar && pbaOffset < tableOffset + tableSize && tableOffset < pbaOffset + pbaSize)
    throw new Error("capabilities.msix: the table and the PBA overlap");
  return { vectors: n, tableBar: spec.bar, tableOffset, tableSize, pbaBar, pbaOffset, pbaSize };
}

export class Msix {
  readonly offset: number;
  readonly layout: MsixLayout;
  readonly #cs: ConfigSpace;
  readonly #table: Uint8Array;
  readonly #pba: Uint8Array;
  readonly #fire: (vector: number) => void;
  #tableTouched = false;
  /** Raises latched in the PBA while masked. */
  latched = 0;

  constructor(cs: ConfigSpace, offset: number, next: number, layout: MsixLayout, fire: (v: number) => void) {
    this.offset = offset;
    this.layout = layout;
    this.#cs = cs;
    this.#fire = fire;
    this.#table = new Uint8Array(layout.tableSize);
    this.#pba = new Uint8Array(layout.pbaSize);
    cs.define(offset, 1, { value: MsixCap.ID });
    cs.define(offset + 1, 1, { value: next });
    cs.define(offset + MsixCap.CONTROL, 2, {
      value: layout.vectors - 1,
      writable: MsixControl.FUNCTION_MASK | MsixControl.ENABLE,
    });
    cs.define(offset + MsixCap.TABLE, 4, { value: (layout.tableOffset | layout.tableBar) >>> 0 });
    cs.define(offset + MsixCap.PBA, 4, { value: (layout.pbaOffset | layout.pbaBar) >>> 0 });
    cs.watch(offset + MsixCap.CONTROL, 2, () => this.#deliverPending());
    this.reset();
  }

  get enabled(): boolean {
    return (this.#control() & MsixControl.ENABLE) !== 0;
  }

  get functionMasked(): boolean {
    return (this.#control() & MsixControl.FUNCTION_MASK) !== 0;
  }

  /** Whether the client has accessed the table since reset (its Mask bits then apply). */
  get tableTouched(): boolean {
    return this.#tableTouched;
  }

  isMasked(vector: number): boolean {
    if (this.functionMasked) return true;
    if (!this.#tableTouched) return false;
    return (this.#table[vector * MsixEntry.SIZE + MsixEntry.VECTOR_CONTROL]! & MSIX_ENTRY_MASKED) !== 0;
  }

  isPending(vector: number): boolean {
    return ((this.#pba[vector >> 3]! >> (vector & 7)) & 1) !== 0;
  }

  /** Send `vector` (beyond the table: the last vector), or latch it in the PBA while masked. */
  raise(vector: number): void {
    const v = Math.min(vector, this.layout.vectors - 1);
    if (this.isMasked(v)) {
      this.#setPending(v, true);
      this.latched++;
      return;
    }
    this.#fire(v);
  }

  /** The condition behind `vector` went away: clear its PBA bit. */
  withdraw(vector: number): void {
    this.#setPending(Math.min(vector, this.layout.vectors - 1), false);
  }

  /** Which framework structure `[offset, offset + size)` of BAR `bar` hits: the table, the PBA or
   * neither; "straddle" when it crosses the edge of one. */
  locate(bar: number, offset: number, size: number): "table" | "pba" | "straddle" | null {
    const l = this.layout;
    const hit = (b: number, start: number, length: number) => {
      if (bar !== b || offset + size <= start || offset >= start + length) return null;
      return offset >= start && offset + size <= start + length ? "in" : "straddle";
    };
    const t = hit(l.tableBar, l.tableOffset, l.tableSize);
    if (t) return t === "in" ? "table" : "straddle";
    const p = hit(l.pbaBar, l.pbaOffset, l.pbaSize);
    if (p) return p === "in" ? "pba" : "straddle";
    return null;
  }

  readTable(offset: number, size: number): Uint8Array {
    this.#tableTouched = true;
    const at = offset - this.layout.tableOffset;
    return this.#table.slice(at, at + size);
  }

  writeTable(offset: number, data: Uint8Array): void {
    this.#tableTouched = true;
    const at = offset - this.layout.tableOffset;
    for (let i = 0; i < data.length; i++) {
      const pos = at + i;
      const field = pos % MsixEntry.SIZE;
      let v = data[i]!;
      if (field === MsixEntry.ADDRESS_LO) v &= 0xfc;
      else if (field === MsixEntry.VECTOR_CONTROL) v &= MSIX_ENTRY_MASKED;
      else if (field > MsixEntry.VECTOR_CONTROL) v = 0;
      this.#table[pos] = v;
    }
    this.#deliverPending();
  }

  readPba(offset: number, size: number): Uint8Array {
    const at = offset - this.layout.pbaOffset;
    return this.#pba.slice(at, at + size);
  }

  /** Power-on state: every entry masked with address and data 0, nothing pending. */
  reset(): void {
    this.#table.fill(0);
    for (let v = 0; v < this.layout.vectors; v++) {
      this.#table[v * MsixEntry.SIZE + MsixEntry.VECTOR_CONTROL] = MSIX_ENTRY_MASKED;
    }
    this.#pba.fill(0);
    this.#tableTouched = false;
  }

  #control(): number {
    return this.#cs.get16(this.offset + MsixCap.CONTROL);
  }

  #setPending(v: number, on: boolean): void {
    const bit = 1 << (v & 7);
    this.#pba[v >> 3] = on ? this.#pba[v >> 3]! | bit : this.#pba[v >> 3]! & ~bit;
  }

  #deliverPending(): void {
    if (!this.enabled) return;
    for (let v = 0; v < this.layout.vectors; v++) {
      if (this.isPending(v) && !this.isMasked(v)) {
        this.#setPending(v, false);
        this.#fire(v);
      }
    }
  }
}
