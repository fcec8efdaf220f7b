// REGION_WRITE_MULTI (15): several small posted writes in one message (QEMU coalesces queued
// writes of up to 8 bytes when the server offered write_multiple).
//   0: u64 wr_cnt   8: wr_cnt entries of 24 bytes:
//      +0: u64 offset  +8: u32 region  +12: u32 count (≤ 8)  +16: u8 data[8] (first count bytes used)
//   reply: 0: u64 wr_cnt (writes completed)
// The body must be exactly 8 + 24·wr_cnt bytes, so wr_cnt can never exceed what the body holds;
// it is checked before any loop. Entries are applied in order by the server, which reads them in
// place (checkRegionWriteMulti and the writeMulti* readers: no object, view or bigint per entry).

import { exactBytes, invalid, needBytes, readU32, readU64, writeU32, writeU64 } from "../bytes.ts";

export interface WriteMultiEntry {
  offset: bigint;
  region: number;
  count: number;
  /** The count meaningful bytes, a view into the body. */
  data: Uint8Array;
}

export interface WriteMultiReply {
  wrCnt: bigint;
}

export const WRITE_MULTI_HEAD = 8;
export const WRITE_MULTI_ENTRY_SIZE = 24;
export const WRITE_MULTI_MAX_DATA = 8;

/** Validate a REGION_WRITE_MULTI body, all of it, before any entry is looked at: returns wr_cnt.
 * Throws ProtocolError(EINVAL) for a body that is not 8 + 24·wr_cnt bytes or a count over 8 (the
 * first such entry named). `decodeRegionWriteMulti` is this plus an object per entry; a server on
 * the hot path reads the entries in place with the `writeMulti*` readers below instead. */
export function checkRegionWriteMulti(body: Uint8Array): number {
  needBytes(body, WRITE_MULTI_HEAD, "REGION_WRITE_MULTI");
  // wr_cnt as two u32 halves: a high half that is not 0 can never fit a body (wr_cnt ≥ 2^32
  // entries of 24 bytes), so only the message needs the bigint.
  const lo = readU32(body, 0);
  const room = Math.floor((body.length - WRITE_MULTI_HEAD) / WRITE_MULTI_ENTRY_SIZE);
  if (readU32(body, 4) !== 0 || lo > room)
    invalid(`REGION_WRITE_MULTI: wr_cnt ${readU64(body, 0)} does not fit a ${body.length}-byte body`);
  const n = lo;
  exactBytes(body, WRITE_MULTI_HEAD + WRITE_MULTI_ENTRY_SIZE * n, "REGION_WRITE_MULTI");
  for (let i = 0, at = WRITE_MULTI_HEAD + 12; i < n; i++, at += WRITE_MULTI_ENTRY_SIZE) {
    const count = readU32(body, at);
    if (count > WRITE_MULTI_MAX_DATA) invalid(`REGION_WRITE_MULTI: entry ${i} has count ${count}, over 8`);
  }
  return n;
}

/** Byte position of entry `i` in a checked body. */
export function writeMultiEntryAt(i: number): number {
  return WRITE_MULTI_HEAD + WRITE_MULTI_ENTRY_SIZE * i;
}

/** The entry's offset as a number when it is below 2^53 (exactly), else -1: read it with
 * `writeMultiOffset` then. Every offset a region can hold is below 2^53. */
export function writeMultiOffsetNumber(body: Uint8Array, at: number): number {
  const hi = readU32(body, at + 4);
  if (hi === 0) return readU32(body, at);
  return hi < 0x200000 ? hi * 0x1_0000_0000 + readU32(body, at) : -1;
}

/** The entry's offset, any u64. */
export function writeMultiOffset(body: Uint8Array, at: number): bigint {
  return readU64(body, at);
}

export function writeMultiRegion(body: Uint8Array, at: number): number {
  return readU32(body, at + 8);
}

export function writeMultiCount(body: Uint8Array, at: number): number {
  return readU32(body, at + 12);
}

/** Where the entry's data starts in the body (its first `writeMultiCount` bytes are meaningful). */
export function writeMultiDataAt(at: number): number {
  return at + 16;
}

/** Throws ProtocolError(EINVAL) for a body that is not 8 + 24·wr_cnt bytes or a count over 8. */
export function decodeRegionWriteMulti(body: Uint8Array): WriteMultiEntry[] {
  const n = checkRegionWriteMulti(body);
  const entries: WriteMultiEntry[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const at = WRITE_MULTI_HEAD + WRITE_MULTI_ENTRY_SIZE * i;
    const count = readU32(body, at + 12);
    entries[i] = {
      offset: readU64(body, at),
      region: readU32(body, at + 8),
      count,
      data: body.subarray(at + 16, at + 16 + count),
    };
  }
  return entries;
}

/** Each entry's data must be count bytes, count ≤ 8; unused data bytes are zero. Throws RangeError. */
export function encodeRegionWriteMulti(entries: readonly WriteMultiEntry[]): Uint8Array {
  const out = new Uint8Array(WRITE_MULTI_HEAD + WRITE_MULTI_ENTRY_SIZE * entries.length);
  writeU64(out, 0, BigInt(entries.length), "wr_cnt");
  entries.forEach((e, i) => {
    if (e.count > WRITE_MULTI_MAX_DATA || e.data.length !== e.count) {
      throw new RangeError(`REGION_WRITE_MULTI: entry ${i} needs count ≤ 8 and data of count bytes`);
    }
    const at = WRITE_MULTI_HEAD + WRITE_MULTI_ENTRY_SIZE * i;
    writeU64(out, at, e.offset, "offset");
    writeU32(out, at + 8, e.region, "region");
    writeU32(out, at + 12, e.count, "count");
    out.set(e.data, at + 16);
  });
  return out;
}

/** Throws ProtocolError(EINVAL) unless the body is exactly 8 bytes. */
export function decodeRegionWriteMultiReply(body: Uint8Array): WriteMultiReply {
  exactBytes(body, WRITE_MULTI_HEAD, "REGION_WRITE_MULTI reply");
  return { wrCnt: readU64(body, 0) };
}

export function encodeRegionWriteMultiReply(r: WriteMultiReply): Uint8Array {
  const out = new Uint8Array(WRITE_MULTI_HEAD);
  writeU64(out, 0, r.wrCnt, "wrCnt");
  return out;
}
