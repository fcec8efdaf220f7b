// REGION_READ (9) / REGION_WRITE (10): one guest access to a region, the hot path.
//   0: u64 offset (within the region)  8: u32 region (index)  12: u32 count  16: data
// READ:  request 16 bytes; reply = the head echoed + count data bytes.
// WRITE: request = head + count data bytes; reply = the head echoed (no data). A posted write
//        (NO_REPLY) gets no reply at all; that is the session's business.
// A zero-count access may be answered header-only; those replies decode as a zero access.
//
// Decoders return views into the body and allocate one object; the *Message encoders write the
// header, the head and the data into a single buffer ready for the socket.

import {
  checkDataLength,
  EMPTY,
  exactBytes,
  needBytes,
  readU32,
  readU64,
  writeU32,
  writeU64,
} from "../bytes.ts";
import { Command, HEADER_SIZE, HeaderFlag } from "../constants.ts";
import { encodeHeader } from "../header.ts";

export interface RegionAccess {
  offset: bigint;
  region: number;
  count: number;
  data?: Uint8Array;
}

export type RegionAccessWithData = RegionAccess & { data: Uint8Array };

export const REGION_ACCESS_SIZE = 16;

function decodeHead(body: Uint8Array): RegionAccess {
  return { offset: readU64(body, 0), region: readU32(body, 8), count: readU32(body, 12) };
}

function writeHead(out: Uint8Array, at: number, a: RegionAccess): void {
  writeU64(out, at, a.offset, "offset");
  writeU32(out, at + 8, a.region, "region");
  writeU32(out, at + 12, a.count, "count");
}

function decodeWithData(body: Uint8Array, what: string): RegionAccessWithData {
  needBytes(body, REGION_ACCESS_SIZE, what);
  const a = decodeHead(body) as RegionAccessWithData;
  exactBytes(body, REGION_ACCESS_SIZE + a.count, what);
  a.data = body.subarray(REGION_ACCESS_SIZE);
  return a;
}

function encodeWithData(a: RegionAccess, what: string): Uint8Array {
  const data = checkDataLength(a.data, a.count, what);
  const out = new Uint8Array(REGION_ACCESS_SIZE + data.length);
  writeHead(out, 0, a);
  out.set(data, REGION_ACCESS_SIZE);
  return out;
}

const zeroAccess = (): RegionAccessWithData => ({ offset: 0n, region: 0, count: 0, data: EMPTY });

/** Request: at least 16 bytes (extra bytes ignored). Throws ProtocolError(EINVAL). */
export function decodeRegionRead(body: Uint8Array): RegionAccess {
  needBytes(body, REGION_ACCESS_SIZE, "REGION_READ");
  return decodeHead(body);
}

export function encodeRegionRead(a: RegionAccess): Uint8Array {
  const out = new Uint8Array(REGION_ACCESS_SIZE);
  writeHead(out, 0, a);
  return out;
}

/**
 * Reply: the head and exactly count data bytes; an empty body decodes as a zero access.
 * Throws ProtocolError(EINVAL).
 */
export function decodeRegionReadReply(body: Uint8Array): RegionAccessWithData {
  if (body.length === 0) return zeroAccess();
  return decodeWithData(body, "REGION_READ reply");
}

/** Head + data; data.length must equal count (RangeError). */
export function encodeRegionReadReply(a: RegionAccess): Uint8Array {
  return encodeWithData(a, "REGION_READ reply");
}

/** Request: the head and exactly count data bytes. Throws ProtocolError(EINVAL). */
export function decodeRegionWrite(body: Uint8Array): RegionAccessWithData {
  return decodeWithData(body, "REGION_WRITE");
}

export function encodeRegionWrite(a: RegionAccess): Uint8Array {
  return encodeWithData(a, "REGION_WRITE");
}

/** Reply: exactly the 16-byte head; an empty body decodes as a zero access. Throws ProtocolError(EINVAL). */
export function decodeRegionWriteReply(body: Uint8Array): RegionAccess {
  if (body.length === 0) return zeroAccess();
  exactBytes(body, REGION_ACCESS_SIZE, "REGION_WRITE reply");
  return decodeHead(body);
}

/** The head echoed (count = bytes written), no data. */
export function encodeRegionWriteReply(a: RegionAccess): Uint8Array {
  return encodeRegionRead(a);
}

function message(
  msgId: number,
  command: number,
  flags: number,
  a: RegionAccess,
  data: Uint8Array | null,
): Uint8Array {
  const length = data ? data.length : 0;
  const out = new Uint8Array(HEADER_SIZE + REGION_ACCESS_SIZE + length);
  encodeHeader({ msgId, command, msgSize: out.length, flags, error: 0 }, out, 0);
  writeHead(out, HEADER_SIZE, a);
  if (data) out.set(data, HEADER_SIZE + REGION_ACCESS_SIZE);
  return out;
}

/** Whole REGION_READ request message (32 bytes), for the client. */
export function encodeRegionReadMessage(msgId: number, a: RegionAccess): Uint8Array {
  return message(msgId, Command.REGION_READ, HeaderFlag.COMMAND, a, null);
}

/** Whole REGION_READ reply message (header + head + data) in one allocation, for the server. */
export function encodeRegionReadReplyMessage(msgId: number, a: RegionAccessWithData): Uint8Array {
  return message(
    msgId,
    Command.REGION_READ,
    HeaderFlag.REPLY,
    a,
    checkDataLength(a.data, a.count, "REGION_READ reply"),
  );
}

/** Whole REGION_WRITE request message; flags is the header's (e.g. HeaderFlag.NO_REPLY for a posted write). */
export function encodeRegionWriteMessage(msgId: number, flags: number, a: RegionAccess): Uint8Array {
  return message(msgId, Command.REGION_WRITE, flags, a, checkDataLength(a.data, a.count, "REGION_WRITE"));
}

/** Whole REGION_WRITE reply message (32 bytes), for the server. */
export function encodeRegionWriteReplyMessage(msgId: number, a: RegionAccess): Uint8Array {
  return message(msgId, Command.REGION_WRITE, HeaderFlag.REPLY, a, null);
}
