// Vendor-specific capability (ID 0x09): an ID byte, a next pointer, a length byte (the whole
// capability's size) and then bytes whose meaning is the vendor's. The declaration gives those
// bytes' power-on values and, optionally, a per-byte write mask; the device model reads the
// current bytes through ctx.pci.config.
import type { ConfigSpace } from "../config-space.ts";

export const VendorCap = {
  ID: 0x09, //      capability ID
  LENGTH: 0x02, //  RO  length of the capability in bytes (header included)
  DATA: 0x03, //    RO/RW vendor-defined bytes (RW where the declared mask says so)
} as const;

export interface VendorCapSpec {
  /** The vendor-defined bytes after the 3-byte header (at most 252). */
  data: Uint8Array | readonly number[];
  /** Per data byte: the bits the client may write (default none). */
  writable?: Uint8Array | readonly number[];
  /** Pin the capability at this config offset. */
  offset?: number;
}

export function vendorCapSize(spec: VendorCapSpec): number {
  return VendorCap.DATA + spec.data.length;
}

export function checkVendorCap(spec: VendorCapSpec, what: string): void {
  if (spec.data.length > 252) throw new Error(`${what}: data of ${spec.data.length} bytes exceeds 252`);
  if (spec.writable && spec.writable.length > spec.data.length)
    throw new Error(`${what}: writable has more bytes than data`);
  for (const b of [...spec.data, ...(spec.writable ?? [])]) {
    if (!(Number.isInteger(b) && b >= 0 && b <= 0xff)) throw new Error(`${what}: ${b} is not a byte`);
  }
}

export function defineVendorCap(cs: ConfigSpace, offset: number, next: number, spec: VendorCapSpec): void {
  cs.define(offset, 1, { value: VendorCap.ID });
  cs.define(offset + 1, 1, { value: next });
  cs.define(offset + VendorCap.LENGTH, 1, { value: vendorCapSize(spec) });
  const mask = new Uint8Array(spec.data.length);
  if (spec.writable) mask.set(spec.writable);
  cs.defineBytes(offset + VendorCap.DATA, Uint8Array.from(spec.data), mask);
}
