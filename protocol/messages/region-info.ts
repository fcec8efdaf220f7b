// DEVICE_GET_REGION_INFO (5): struct vfio_region_info, then (in a reply) a chain of capabilities.
//   0: u32 argsz  4: u32 flags (RegionFlag)  8: u32 index  12: u32 cap_offset  16: u64 size
//   24: u64 offset (fd offset to mmap)       32: capabilities (reply only)
// Every capability starts with  +0: u16 id  +2: u16 version  +4: u32 next, where next is the
// offset of the following capability from the start of the struct (0 ends the chain). Known
// bodies: SPARSE_MMAP (+8 u32 nr_areas, +12 u32 reserved, +16 {u64 offset, u64 size}*),
// TYPE (+8 u32 type, +12 u32 subtype), MSIX_MAPPABLE (nothing). Unknown ids keep their bytes.
//
// The argsz retry rule: a request's argsz is the room the client has for the reply. The reply's
// argsz is always 32 + the capabilities' length; the capabilities (with the CAPS flag and
// cap_offset 32) are sent only when they fit, otherwise only the 32-byte struct goes back and
// the client asks again with a larger argsz. Capabilities are laid out 8-byte aligned.
//
// The reply decoder walks the chain only forwards (each next beyond the current capability),
// so a malicious chain cannot loop, and it checks that every capability fits the body.

import { invalid, needBytes, readU16, readU32, readU64, writeU16, writeU32, writeU64 } from "../bytes.ts";
import { RegionCapId, RegionFlag } from "../constants.ts";

export interface RegionInfo {
  argsz: number;
  flags: number;
  index: number;
  capOffset: number;
  size: bigint;
  offset: bigint;
}

export interface SparseMmapArea {
  offset: bigint;
  size: bigint;
}

export interface SparseMmapCap {
  id: typeof RegionCapId.SPARSE_MMAP;
  version: number;
  areas: SparseMmapArea[];
}

export interface TypeCap {
  id: typeof RegionCapId.TYPE;
  version: number;
  type: number;
  subtype: number;
}

export interface MsixMappableCap {
  id: typeof RegionCapId.MSIX_MAPPABLE;
  version: number;
}

/** Any other capability: its bytes after the 8-byte capability header (a view when decoded). */
export interface RawRegionCap {
  id: number;
  version: number;
  data: Uint8Array;
}

export type RegionCap = SparseMmapCap | TypeCap | MsixMappableCap | RawRegionCap;

export interface RegionInfoReplyInput {
  flags: number;
  index: number;
  size: bigint;
  offset: bigint;
  caps: RegionCap[];
}

export const REGION_INFO_SIZE = 32;
const CAP_HEADER = 8;

/**
 * The request (or the fixed part of a reply): body of at least 32 bytes and argsz at least 32.
 * Throws ProtocolError(EINVAL).
 */
export function decodeRegionInfo(body: Uint8Array): RegionInfo {
  needBytes(body, REGION_INFO_SIZE, "DEVICE_GET_REGION_INFO");
  const argsz = readU32(body, 0);
  if (argsz < REGION_INFO_SIZE)
    invalid(`DEVICE_GET_REGION_INFO: argsz ${argsz} is below ${REGION_INFO_SIZE}`);
  return {
    argsz,
    flags: readU32(body, 4),
    index: readU32(body, 8),
    capOffset: readU32(body, 12),
    size: readU64(body, 16),
    offset: readU64(body, 24),
  };
}

function writeInfo(out: Uint8Array, r: RegionInfo): void {
  writeU32(out, 0, r.argsz, "argsz");
  writeU32(out, 4, r.flags, "flags");
  writeU32(out, 8, r.index, "index");
  writeU32(out, 12, r.capOffset, "capOffset");
  writeU64(out, 16, r.size, "size");
  writeU64(out, 24, r.offset, "offset");
}

/** The 32-byte struct as given (requests, or a reply built by hand). */
export function encodeRegionInfo(r: RegionInfo): Uint8Array {
  const out = new Uint8Array(REGION_INFO_SIZE);
  writeInfo(out, r);
  return out;
}

function capLength(cap: RegionCap): number {
  if ("data" in cap) return CAP_HEADER + cap.data.length;
  switch (cap.id) {
    case RegionCapId.SPARSE_MMAP:
      return 16 + 16 * cap.areas.length;
    case RegionCapId.TYPE:
      return 16;
    case RegionCapId.MSIX_MAPPABLE:
      return CAP_HEADER;
    default:
      throw new RangeError(
        `region capability ${(cap as { id: number }).id} has no known layout: give its data`,
      );
  }
}

const align8 = (n: number): number => (n + 7) & ~7;

/** Bytes the chain of `caps` takes after the 32-byte struct (each capability 8-byte aligned). */
export function regionCapsLength(caps: readonly RegionCap[]): number {
  let n = 0;
  for (const cap of caps) n += align8(capLength(cap));
  return n;
}

function writeCap(out: Uint8Array, at: number, cap: RegionCap, next: number): void {
  writeU16(out, at, cap.id, "cap.id");
  writeU16(out, at + 2, cap.version, "cap.version");
  writeU32(out, at + 4, next, "cap.next");
  if ("data" in cap) {
    out.set(cap.data, at + CAP_HEADER);
    return;
  }
  switch (cap.id) {
    case RegionCapId.SPARSE_MMAP:
      writeU32(out, at + 8, cap.areas.length, "nr_areas");
      cap.areas.forEach((area, i) => {
        writeU64(out, at + 16 + 16 * i, area.offset, "area.offset");
        writeU64(out, at + 24 + 16 * i, area.size, "area.size");
      });
      return;
    case RegionCapId.TYPE:
      writeU32(out, at + 8, cap.type, "cap.type");
      writeU32(out, at + 12, cap.subtype, "cap.subtype");
      return;
    case RegionCapId.MSIX_MAPPABLE:
      return;
  }
}

/**
 * A reply following the argsz retry rule: argsz is always 32 + capabilities; the capabilities,
 * the CAPS flag and cap_offset 32 are included only if requestArgsz leaves room for them (the
 * CAPS bit of r.flags is ignored and set or cleared here). Throws RangeError for bad values.
 */
export function encodeRegionInfoReply(r: RegionInfoReplyInput, requestArgsz: number): Uint8Array {
  const capsLength = regionCapsLength(r.caps);
  const argsz = REGION_INFO_SIZE + capsLength;
  const withCaps = r.caps.length > 0 && requestArgsz >= argsz;
  const out = new Uint8Array(withCaps ? argsz : REGION_INFO_SIZE);
  const flags = withCaps ? r.flags | RegionFlag.CAPS : r.flags & ~RegionFlag.CAPS;
  writeInfo(out, {
    argsz,
    flags: flags >>> 0,
    index: r.index,
    capOffset: withCaps ? REGION_INFO_SIZE : 0,
    size: r.size,
    offset: r.offset,
  });
  if (withCaps) {
    let at = REGION_INFO_SIZE;
    r.caps.forEach((cap, i) => {
      const next = at + align8(capLength(cap));
      writeCap(out, at, cap, i === r.caps.length - 1 ? 0 : next);
      at = next;
    });
  }
  return out;
}

function decodeCap(body: Uint8Array, at: number, limit: number): RegionCap {
  const id = readU16(body, at);
  const version = readU16(body, at + 2);
  const room = limit - at;
  const need = (n: number, what: string): void => {
    if (room < n)
      invalid(`DEVICE_GET_REGION_INFO reply: ${what} capability at ${at} needs ${n} bytes, has ${room}`);
  };
  switch (id) {
    case RegionCapId.SPARSE_MMAP: {
      need(16, "sparse-mmap");
      const nrAreas = readU32(body, at + 8);
      if (nrAreas > (room - 16) / 16) need(16 + 16 * nrAreas, "sparse-mmap");
      const areas: SparseMmapArea[] = [];
      for (let i = 0; i < nrAreas; i++) {
        areas.push({ offset: readU64(body, at + 16 + 16 * i), size: readU64(body, at + 24 + 16 * i) });
      }
      return { id, version, areas };
    }
    case RegionCapId.TYPE:
      need(16, "type");
      return { id, version, type: readU32(body, at + 8), subtype: readU32(body, at + 12) };
    case RegionCapId.MSIX_MAPPABLE:
      return { id, version };
    default:
      return { id, version, data: body.subarray(at + CAP_HEADER, limit) };
  }
}

/**
 * The struct and its capability chain (empty unless flags has CAPS). Throws ProtocolError(EINVAL)
 * for a short body, argsz under 32, a cap_offset inside the struct or past the body, a next
 * pointer that goes backwards or out of the body, or a capability overrunning its room.
 */
export function decodeRegionInfoReply(body: Uint8Array): RegionInfo & { caps: RegionCap[] } {
  const info = decodeRegionInfo(body);
  const caps: RegionCap[] = [];
  if ((info.flags & RegionFlag.CAPS) === 0) return { ...info, caps };
  let at = info.capOffset;
  if (at < REGION_INFO_SIZE) invalid(`DEVICE_GET_REGION_INFO reply: cap_offset ${at} points into the struct`);
  for (;;) {
    if (at + CAP_HEADER > body.length) {
      invalid(`DEVICE_GET_REGION_INFO reply: capability at ${at} is outside the ${body.length}-byte body`);
    }
    const next = readU32(body, at + 4);
    if (next !== 0 && next < at + CAP_HEADER) {
      invalid(
        `DEVICE_GET_REGION_INFO reply: capability at ${at} has next ${next}, which does not move forwards`,
      );
    }
    caps.push(decodeCap(body, at, next === 0 ? body.length : Math.min(next, body.length)));
    if (next === 0) break;
    at = next;
  }
  return { ...info, caps };
}
