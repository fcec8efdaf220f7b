// DMA commands: the client's DMA_MAP (2) / DMA_UNMAP (3) describe its memory to the server;
// the server's DMA_READ (11) / DMA_WRITE (12) reach client memory that came without an fd.
//
//   DMA_MAP     0: u32 argsz(32)  4: u32 flags  8: u64 offset  16: u64 addr  24: u64 size
//               reply: no body. An fd (counted by the caller) may come with the request.
//   DMA_UNMAP   0: u32 argsz  4: u32 flags  8: u64 addr  16: u64 size
//               [24: u64 bitmap.pgsize  32: u64 bitmap.size]  only with GET_DIRTY_BITMAP (legacy)
//               reply: empty, or the 24-byte struct echoed [+ bitmap header + bitmap bytes]
//
// DMA_READ / DMA_WRITE come in two layouts (README: Running under QEMU, --dma-layout):
//   "spec":      0: u64 addr  8: u64 count  16: data      (read request 16, write reply 16)
//   "qemu-10.1": 0: u64 addr  8: u32 count  12: data, and 4 zero bytes after the data, so the
//                body is 16 + count (QEMU sizes its struct with padding but reads data at 12);
//                a DMA_WRITE reply is header-only.
// The qemu-10.1 decoders accept 12 + count up to 16 + count bytes (the padding is optional),
// and read only the low 32 bits of count. Flags are not interpreted beyond what selects the
// layout: which flags are acceptable is the server's decision.

import {
  checkDataLength,
  countFromU64,
  EMPTY,
  exactBytes,
  invalid,
  needBytes,
  readU32,
  readU64,
  writeU32,
  writeU64,
} from "../bytes.ts";
import { DmaUnmapFlag } from "../constants.ts";

export interface DmaMap {
  argsz: number;
  flags: number;
  offset: bigint;
  addr: bigint;
  size: bigint;
}

export interface DmaUnmap {
  argsz: number;
  flags: number;
  addr: bigint;
  size: bigint;
  /** Legacy dirty-bitmap header; present iff flags has GET_DIRTY_BITMAP. */
  bitmap?: { pgsize: bigint; size: bigint };
}

export interface DmaUnmapReply extends DmaUnmap {
  /** The dirty bitmap itself (bitmap.size bytes), with GET_DIRTY_BITMAP. A view into the body. */
  bitmapData?: Uint8Array;
}

export type DmaLayout = "spec" | "qemu-10.1";

export interface DmaAccess {
  addr: bigint;
  count: number;
  data?: Uint8Array;
}

export const DMA_MAP_SIZE = 32;
export const DMA_UNMAP_SIZE = 24;
export const DMA_UNMAP_BITMAP_SIZE = 40;

/** Throws ProtocolError(EINVAL) for a body under 32 bytes or argsz under 32. */
export function decodeDmaMap(body: Uint8Array): DmaMap {
  needBytes(body, DMA_MAP_SIZE, "DMA_MAP");
  const argsz = readU32(body, 0);
  if (argsz < DMA_MAP_SIZE) invalid(`DMA_MAP: argsz ${argsz} is below ${DMA_MAP_SIZE}`);
  return {
    argsz,
    flags: readU32(body, 4),
    offset: readU64(body, 8),
    addr: readU64(body, 16),
    size: readU64(body, 24),
  };
}

export function encodeDmaMap(m: DmaMap): Uint8Array {
  const out = new Uint8Array(DMA_MAP_SIZE);
  writeU32(out, 0, m.argsz, "argsz");
  writeU32(out, 4, m.flags, "flags");
  writeU64(out, 8, m.offset, "offset");
  writeU64(out, 16, m.addr, "addr");
  writeU64(out, 24, m.size, "size");
  return out;
}

function decodeUnmapHead(body: Uint8Array, what: string): DmaUnmap {
  needBytes(body, DMA_UNMAP_SIZE, what);
  const flags = readU32(body, 4);
  const u: DmaUnmap = { argsz: readU32(body, 0), flags, addr: readU64(body, 8), size: readU64(body, 16) };
  if (flags & DmaUnmapFlag.GET_DIRTY_BITMAP) {
    needBytes(body, DMA_UNMAP_BITMAP_SIZE, `${what} with GET_DIRTY_BITMAP`);
    u.bitmap = { pgsize: readU64(body, 24), size: readU64(body, 32) };
  }
  return u;
}

/**
 * The body must be exactly 24 bytes, or 40 with GET_DIRTY_BITMAP; argsz at least 24.
 * Throws ProtocolError(EINVAL).
 */
export function decodeDmaUnmap(body: Uint8Array): DmaUnmap {
  const u = decodeUnmapHead(body, "DMA_UNMAP");
  exactBytes(body, u.bitmap ? DMA_UNMAP_BITMAP_SIZE : DMA_UNMAP_SIZE, "DMA_UNMAP");
  if (u.argsz < DMA_UNMAP_SIZE) invalid(`DMA_UNMAP: argsz ${u.argsz} is below ${DMA_UNMAP_SIZE}`);
  return u;
}

function encodeUnmapInto(u: DmaUnmap, extra: number): Uint8Array {
  const withBitmap = (u.flags & DmaUnmapFlag.GET_DIRTY_BITMAP) !== 0;
  if (withBitmap !== (u.bitmap !== undefined)) {
    throw new RangeError("DMA_UNMAP: bitmap must be given exactly when flags has GET_DIRTY_BITMAP");
  }
  const out = new Uint8Array((u.bitmap ? DMA_UNMAP_BITMAP_SIZE : DMA_UNMAP_SIZE) + extra);
  writeU32(out, 0, u.argsz, "argsz");
  writeU32(out, 4, u.flags, "flags");
  writeU64(out, 8, u.addr, "addr");
  writeU64(out, 16, u.size, "size");
  if (u.bitmap) {
    writeU64(out, 24, u.bitmap.pgsize, "bitmap.pgsize");
    writeU64(out, 32, u.bitmap.size, "bitmap.size");
  }
  return out;
}

export function encodeDmaUnmap(u: DmaUnmap): Uint8Array {
  return encodeUnmapInto(u, 0);
}

/**
 * null for an empty (header-only) reply; else the echoed struct, plus with GET_DIRTY_BITMAP the
 * bitmap header and exactly bitmap.size bitmap bytes. Throws ProtocolError(EINVAL).
 */
export function decodeDmaUnmapReply(body: Uint8Array): DmaUnmapReply | null {
  if (body.length === 0) return null;
  const u: DmaUnmapReply = decodeUnmapHead(body, "DMA_UNMAP reply");
  if (!u.bitmap) {
    exactBytes(body, DMA_UNMAP_SIZE, "DMA_UNMAP reply");
    return u;
  }
  const want = BigInt(body.length - DMA_UNMAP_BITMAP_SIZE);
  if (u.bitmap.size !== want) {
    invalid(`DMA_UNMAP reply: bitmap size is ${u.bitmap.size} but ${want} bitmap bytes follow`);
  }
  u.bitmapData = body.subarray(DMA_UNMAP_BITMAP_SIZE);
  return u;
}

/** The echo (24 bytes), or with GET_DIRTY_BITMAP 40 + bitmapData (whose length must be bitmap.size). */
export function encodeDmaUnmapReply(r: DmaUnmapReply): Uint8Array {
  if (!r.bitmap) return encodeUnmapInto(r, 0);
  const data = r.bitmapData ?? EMPTY;
  if (BigInt(data.length) !== r.bitmap.size) {
    throw new RangeError(
      `DMA_UNMAP reply: bitmapData is ${data.length} bytes but bitmap.size is ${r.bitmap.size}`,
    );
  }
  const out = encodeUnmapInto(r, data.length);
  out.set(data, DMA_UNMAP_BITMAP_SIZE);
  return out;
}

// --- DMA_READ / DMA_WRITE (server → client) ---

const ACCESS_HEAD = 16;
const QEMU_DATA_OFFSET = 12;

function decodeAccessHead(body: Uint8Array, layout: DmaLayout, what: string): DmaAccess {
  if (layout === "spec") {
    needBytes(body, ACCESS_HEAD, what);
    return { addr: readU64(body, 0), count: countFromU64(readU64(body, 8), what) };
  }
  needBytes(body, QEMU_DATA_OFFSET, what);
  return { addr: readU64(body, 0), count: readU32(body, 8) };
}

/** addr and count at the head, data after it (at 16, or at 12 with 4 padding bytes after). */
function encodeAccess(a: DmaAccess, layout: DmaLayout, data: Uint8Array | null): Uint8Array {
  const length = data ? data.length : 0;
  const out = new Uint8Array(ACCESS_HEAD + length);
  writeU64(out, 0, a.addr, "addr");
  if (layout === "spec") {
    if (!Number.isSafeInteger(a.count) || a.count < 0)
      throw new RangeError(`count must be a u64, got ${a.count}`);
    writeU64(out, 8, BigInt(a.count), "count");
    if (data) out.set(data, ACCESS_HEAD);
  } else {
    writeU32(out, 8, a.count, "count");
    if (data) out.set(data, QEMU_DATA_OFFSET);
  }
  return out;
}

/** Data that must hold exactly `count` bytes after the head. */
function decodeAccessWithData(body: Uint8Array, layout: DmaLayout, what: string): DmaAccess {
  const a = decodeAccessHead(body, layout, what);
  if (layout === "spec") {
    exactBytes(body, ACCESS_HEAD + a.count, what);
    a.data = body.subarray(ACCESS_HEAD);
  } else {
    const min = QEMU_DATA_OFFSET + a.count;
    if (body.length < min || body.length > min + 4) {
      invalid(`${what}: body is ${body.length} bytes, must be ${min} to ${min + 4} for count ${a.count}`);
    }
    a.data = body.subarray(QEMU_DATA_OFFSET, min);
  }
  return a;
}

/** Request: addr and count, body exactly 16 bytes in both layouts. Throws ProtocolError(EINVAL). */
export function decodeDmaRead(body: Uint8Array, layout: DmaLayout = "spec"): DmaAccess {
  exactBytes(body, ACCESS_HEAD, "DMA_READ");
  return decodeAccessHead(body, layout, "DMA_READ");
}

export function encodeDmaRead(a: DmaAccess, layout: DmaLayout = "spec"): Uint8Array {
  return encodeAccess(a, layout, null);
}

/** Reply: addr, count and exactly count data bytes (a view). Throws ProtocolError(EINVAL). */
export function decodeDmaReadReply(
  body: Uint8Array,
  layout: DmaLayout = "spec",
): DmaAccess & { data: Uint8Array } {
  return decodeAccessWithData(body, layout, "DMA_READ reply") as DmaAccess & { data: Uint8Array };
}

/** spec: 16 + count bytes; qemu-10.1: data at 12 and 4 trailing zero bytes. data.length must be count. */
export function encodeDmaReadReply(a: DmaAccess, layout: DmaLayout = "spec"): Uint8Array {
  return encodeAccess(a, layout, checkDataLength(a.data, a.count, "DMA_READ reply"));
}

/** Request: addr, count and exactly count data bytes (a view). Throws ProtocolError(EINVAL). */
export function decodeDmaWrite(
  body: Uint8Array,
  layout: DmaLayout = "spec",
): DmaAccess & { data: Uint8Array } {
  return decodeAccessWithData(body, layout, "DMA_WRITE") as DmaAccess & { data: Uint8Array };
}

export function encodeDmaWrite(a: DmaAccess, layout: DmaLayout = "spec"): Uint8Array {
  return encodeAccess(a, layout, checkDataLength(a.data, a.count, "DMA_WRITE"));
}

/**
 * null for an empty body (what QEMU 10.1 sends; accepted in either layout), else the 16-byte
 * echo of addr and count. Throws ProtocolError(EINVAL).
 */
export function decodeDmaWriteReply(body: Uint8Array, layout: DmaLayout = "spec"): DmaAccess | null {
  if (body.length === 0) return null;
  exactBytes(body, ACCESS_HEAD, "DMA_WRITE reply");
  return decodeAccessHead(body, layout, "DMA_WRITE reply");
}

/** spec: the 16-byte echo; qemu-10.1: an empty body. */
export function encodeDmaWriteReply(a: DmaAccess, layout: DmaLayout = "spec"): Uint8Array {
  if (layout === "qemu-10.1") return EMPTY;
  return encodeAccess({ addr: a.addr, count: a.count }, layout, null);
}
