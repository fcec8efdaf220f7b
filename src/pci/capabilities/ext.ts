// PCI Express extended capabilities (0x100-0xFFF, PCI Express functions only). Each starts with a
// 32-bit header: capability ID (15:0), version (19:16), next offset (31:20, 0 = last); the list
// starts at 0x100, which reads 0 when the function has none.
// - Device Serial Number (ID 0x0003): a 64-bit serial (IEEE EUI-64), read-only.
// - Vendor-Specific Extended Capability (ID 0x000B): a VSEC header (vendor's ID 15:0, revision
//   19:16, length 31:20 counting both headers) and vendor-defined bytes, optionally writable.
import type { ConfigSpace } from "../config-space.ts";

/** Extended capability IDs and register offsets. */
export const ExtCap = {
  DSN_ID: 0x0003, //       Device Serial Number
  VSEC_ID: 0x000b, //      Vendor-Specific Extended Capability
  HEADER: 0x00, //         RO  ID 15:0 | version 19:16 | next 31:20
  DSN_LOW: 0x04, //        RO  serial number bits 31:0
  DSN_HIGH: 0x08, //       RO  serial number bits 63:32
  DSN_SIZE: 0x0c,
  VSEC_HEADER: 0x04, //    RO  VSEC ID 15:0 | VSEC revision 19:16 | VSEC length 31:20
  VSEC_DATA: 0x08, //      RO/RW vendor-defined bytes
} as const;

export interface DsnSpec {
  serial: bigint;
  /** Pin the capability at this config offset. */
  offset?: number;
}

export interface VsecSpec {
  /** The vendor's VSEC ID (16 bits). */
  id: number;
  /** VSEC revision (4 bits, default 0). */
  rev?: number;
  /** Vendor-defined bytes after the two headers (a multiple of 4 keeps the next capability aligned). */
  data: Uint8Array | readonly number[];
  /** Per data byte: bits the client may write (default none). */
  writable?: Uint8Array | readonly number[];
  offset?: number;
}

export function vsecSize(spec: VsecSpec): number {
  return ExtCap.VSEC_DATA + spec.data.length;
}

export function checkDsn(spec: DsnSpec): void {
  if (typeof spec.serial !== "bigint" || spec.serial < 0n || spec.serial > 0xffff_ffff_ffff_ffffn)
    throw new Error("capabilities.dsn.serial must be a 64-bit bigint");
}

export function checkVsec(spec: VsecSpec, what: string): void {
  if (!(Number.isInteger(spec.id) && spec.id >= 0 && spec.id <= 0xffff))
    throw new Error(`${what}: id ${spec.id} is not 16-bit`);
  const rev = spec.rev ?? 0;
  if (!(Number.isInteger(rev) && rev >= 0 && rev <= 0xf)) throw new Error(`${what}: rev ${rev} is not 4-bit`);
  if (vsecSize(spec) > 0xfff) throw new Error(`${what}: ${vsecSize(spec)} bytes exceed the 12-bit length`);
  if (spec.writable && spec.writable.length > spec.data.length)
    throw new Error(`${what}: writable has more bytes than data`);
  for (const b of [...spec.data, ...(spec.writable ?? [])]) {
    if (!(Number.isInteger(b) && b >= 0 && b <= 0xff)) throw new Error(`${what}: ${b} is not a byte`);
  }
}

function defineHeader(cs: ConfigSpace, offset: number, id: number, version: number, next: number): void {
  cs.define(offset, 4, { value: (id | (version << 16) | (next << 20)) >>> 0 });
}

export function defineDsn(cs: ConfigSpace, offset: number, next: number, spec: DsnSpec): void {
  defineHeader(cs, offset, ExtCap.DSN_ID, 1, next);
  cs.define(offset + ExtCap.DSN_LOW, 4, { value: Number(spec.serial & 0xffff_ffffn) });
  cs.define(offset + ExtCap.DSN_HIGH, 4, { value: Number(spec.serial >> 32n) });
}

export function defineVsec(cs: ConfigSpace, offset: number, next: number, spec: VsecSpec): void {
  defineHeader(cs, offset, ExtCap.VSEC_ID, 1, next);
  cs.define(offset + ExtCap.VSEC_HEADER, 4, {
    value: (spec.id | ((spec.rev ?? 0) << 16) | (vsecSize(spec) << 20)) >>> 0,
  });
  const mask = new Uint8Array(spec.data.length);
  if (spec.writable) mask.set(spec.writable);
  cs.defineBytes(offset + ExtCap.VSEC_DATA, Uint8Array.from(spec.data), mask);
}
