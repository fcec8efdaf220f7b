// Little-endian field access on plain Uint8Arrays, shared by every codec in protocol/.
//
// Readers do byte arithmetic instead of creating a DataView per message (the region-access path
// runs once per guest MMIO access); a u64 becomes a bigint, with a single allocation in the
// common case where the high word is zero. Readers do not check bounds: every decoder first
// checks the body length with needBytes/exactBytes, and only then reads.
//
// Writers check that the value fits the field and throw RangeError otherwise (a caller bug),
// and the decode helpers throw ProtocolError(EINVAL) naming the message and the problem.

import { Errno, U64_MAX } from "./constants.ts";
import { ProtocolError } from "./errors.ts";

export function readU16(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8);
}

export function readU32(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)) + b[o + 3] * 0x1000000;
}

export function readU64(b: Uint8Array, o: number): bigint {
  const lo = readU32(b, o);
  const hi = readU32(b, o + 4);
  return hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

export function writeU16(b: Uint8Array, o: number, v: number, field: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`${field} must be a u16, got ${v}`);
  b[o] = v;
  b[o + 1] = v >>> 8;
}

export function writeU32(b: Uint8Array, o: number, v: number, field: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
    throw new RangeError(`${field} must be a u32, got ${v}`);
  b[o] = v;
  b[o + 1] = v >>> 8;
  b[o + 2] = v >>> 16;
  b[o + 3] = v >>> 24;
}

export function writeU64(b: Uint8Array, o: number, v: bigint, field: string): void {
  if (typeof v !== "bigint" || v < 0n || v > U64_MAX)
    throw new RangeError(`${field} must be a u64, got ${v}`);
  const lo = Number(v & 0xffffffffn);
  const hi = Number(v >> 32n);
  b[o] = lo;
  b[o + 1] = lo >>> 8;
  b[o + 2] = lo >>> 16;
  b[o + 3] = lo >>> 24;
  b[o + 4] = hi;
  b[o + 5] = hi >>> 8;
  b[o + 6] = hi >>> 16;
  b[o + 7] = hi >>> 24;
}

/** Throws ProtocolError(EINVAL, message). */
export function invalid(message: string): never {
  throw new ProtocolError(Errno.EINVAL, message);
}

/** EINVAL unless the body holds at least `n` bytes. */
export function needBytes(body: Uint8Array, n: number, what: string): void {
  if (body.length < n) invalid(`${what}: body is ${body.length} bytes, needs at least ${n}`);
}

/** EINVAL unless the body holds exactly `n` bytes. */
export function exactBytes(body: Uint8Array, n: number, what: string): void {
  if (body.length !== n) invalid(`${what}: body is ${body.length} bytes, must be ${n}`);
}

/** A u64 wire count as a number; EINVAL when it cannot be one exactly. */
export function countFromU64(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) invalid(`${what}: count ${v} is too large`);
  return Number(v);
}

/** RangeError unless `data` holds exactly `count` bytes (for encoders). */
export function checkDataLength(data: Uint8Array | undefined, count: number, what: string): Uint8Array {
  if (data === undefined) throw new RangeError(`${what}: data is required`);
  if (data.length !== count)
    throw new RangeError(`${what}: data is ${data.length} bytes but count is ${count}`);
  return data;
}

/** The shared zero-length body (a zero-length view cannot be written through, so sharing is safe). */
export const EMPTY: Uint8Array = new Uint8Array(0);
