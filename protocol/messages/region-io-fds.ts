// DEVICE_GET_REGION_IO_FDS (6): which parts of a region the server serves through fds
// (ioeventfds / ioregionfds) instead of messages. QEMU never sends it; our client may.
//   request  0: u32 argsz (room for the reply)  4: u32 flags (0)  8: u32 index  12: u32 count (0)
//   reply    0: u32 argsz (16 + 40·count)  4: u32 flags  8: u32 index  12: u32 count  16: entries
//   entry    0: u64 offset  8: u64 size  16: u32 fd_index  20: u32 type  24: u32 flags
//            28: u32 padding  32: u64 datamatch                                   (40 bytes)
// This is the spec's 40-byte entry; libvfio-user uses a 48-byte variant that is not supported.
// When the request's argsz is too small for every entry, the reply is the 16-byte head alone,
// with argsz and count filled in, so the client can ask again (the fds go only with entries).
// Whether flags and count are zero in a request is left to the server to judge.

import { invalid, needBytes, readU32, readU64, writeU32, writeU64 } from "../bytes.ts";

export interface RegionIoFds {
  argsz: number;
  flags: number;
  index: number;
  count: number;
}

export interface IoFdEntry {
  offset: bigint;
  size: bigint;
  fdIndex: number;
  type: number;
  flags: number;
  datamatch: bigint;
}

export interface RegionIoFdsReply extends RegionIoFds {
  /** Empty when the reply is a head only (the client's argsz was too small). */
  entries: IoFdEntry[];
}

export const REGION_IO_FDS_SIZE = 16;
export const IO_FD_ENTRY_SIZE = 40;

function decodeHead(body: Uint8Array, what: string): RegionIoFds {
  needBytes(body, REGION_IO_FDS_SIZE, what);
  const argsz = readU32(body, 0);
  if (argsz < REGION_IO_FDS_SIZE) invalid(`${what}: argsz ${argsz} is below ${REGION_IO_FDS_SIZE}`);
  return { argsz, flags: readU32(body, 4), index: readU32(body, 8), count: readU32(body, 12) };
}

function writeHead(out: Uint8Array, r: RegionIoFds): void {
  writeU32(out, 0, r.argsz, "argsz");
  writeU32(out, 4, r.flags, "flags");
  writeU32(out, 8, r.index, "index");
  writeU32(out, 12, r.count, "count");
}

/** Throws ProtocolError(EINVAL) for a body under 16 bytes or argsz under 16. */
export function decodeRegionIoFds(body: Uint8Array): RegionIoFds {
  return decodeHead(body, "DEVICE_GET_REGION_IO_FDS");
}

export function encodeRegionIoFds(r: RegionIoFds): Uint8Array {
  const out = new Uint8Array(REGION_IO_FDS_SIZE);
  writeHead(out, r);
  return out;
}

/** What encodeRegionIoFdsReply needs; argsz and count, if given, are ignored (they are computed). */
export interface RegionIoFdsReplyInput {
  argsz?: number;
  flags: number;
  index: number;
  count?: number;
  entries: readonly IoFdEntry[];
}

/**
 * The full reply when requestArgsz has room for every entry, else the 16-byte head with the
 * needed argsz and the entry count. Throws RangeError for bad values.
 */
export function encodeRegionIoFdsReply(r: RegionIoFdsReplyInput, requestArgsz: number): Uint8Array {
  const argsz = REGION_IO_FDS_SIZE + IO_FD_ENTRY_SIZE * r.entries.length;
  const full = requestArgsz >= argsz;
  const out = new Uint8Array(full ? argsz : REGION_IO_FDS_SIZE);
  writeHead(out, { argsz, flags: r.flags, index: r.index, count: r.entries.length });
  if (full) {
    r.entries.forEach((e, i) => {
      const at = REGION_IO_FDS_SIZE + IO_FD_ENTRY_SIZE * i;
      writeU64(out, at, e.offset, "entry.offset");
      writeU64(out, at + 8, e.size, "entry.size");
      writeU32(out, at + 16, e.fdIndex, "entry.fdIndex");
      writeU32(out, at + 20, e.type, "entry.type");
      writeU32(out, at + 24, e.flags, "entry.flags");
      writeU64(out, at + 32, e.datamatch, "entry.datamatch");
    });
  }
  return out;
}

/**
 * A head-only reply (16 bytes) gives no entries; otherwise the body must be exactly
 * 16 + 40·count. Throws ProtocolError(EINVAL).
 */
export function decodeRegionIoFdsReply(body: Uint8Array): RegionIoFdsReply {
  const head = decodeHead(body, "DEVICE_GET_REGION_IO_FDS reply");
  const entries: IoFdEntry[] = [];
  if (body.length === REGION_IO_FDS_SIZE) return { ...head, entries };
  const want = REGION_IO_FDS_SIZE + IO_FD_ENTRY_SIZE * head.count;
  if (body.length !== want) {
    invalid(
      `DEVICE_GET_REGION_IO_FDS reply: body is ${body.length} bytes, must be ${want} for ${head.count} entries`,
    );
  }
  for (let i = 0; i < head.count; i++) {
    const at = REGION_IO_FDS_SIZE + IO_FD_ENTRY_SIZE * i;
    entries.push({
      offset: readU64(body, at),
      size: readU64(body, at + 8),
      fdIndex: readU32(body, at + 16),
      type: readU32(body, at + 20),
      flags: readU32(body, at + 24),
      datamatch: readU64(body, at + 32),
    });
  }
  return { ...head, entries };
}
