// MIG_DATA_READ (17) / MIG_DATA_WRITE (18): the opaque migration stream, in chunks.
//   0: u32 argsz  4: u32 size  8: data
// READ request:  argsz = room for the reply, size = bytes wanted, no data (8 bytes).
// READ reply:    argsz = 8 + n, size = n, n data bytes (n < wanted: no more data for now).
//                libvfio-user pads its reply to the requested size, so extra bytes
//                after the data are accepted and ignored: size is what counts.
// WRITE request: argsz, size, size data bytes (extra bytes ignored); its reply has no body.

import { checkDataLength, invalid, needBytes, readU32, writeU32 } from "../bytes.ts";

export interface MigData {
  argsz: number;
  size: number;
  data?: Uint8Array;
}

export const MIG_DATA_HEAD = 8;

function decodeHead(body: Uint8Array, what: string): MigData {
  needBytes(body, MIG_DATA_HEAD, what);
  const argsz = readU32(body, 0);
  if (argsz < MIG_DATA_HEAD) invalid(`${what}: argsz ${argsz} is below ${MIG_DATA_HEAD}`);
  return { argsz, size: readU32(body, 4) };
}

function decodeWithData(body: Uint8Array, what: string): MigData & { data: Uint8Array } {
  const m = decodeHead(body, what) as MigData & { data: Uint8Array };
  needBytes(body, MIG_DATA_HEAD + m.size, `${what} of size ${m.size}`);
  m.data = body.subarray(MIG_DATA_HEAD, MIG_DATA_HEAD + m.size);
  return m;
}

function encode(m: MigData, data: Uint8Array | null): Uint8Array {
  const out = new Uint8Array(MIG_DATA_HEAD + (data ? data.length : 0));
  writeU32(out, 0, m.argsz, "argsz");
  writeU32(out, 4, m.size, "size");
  if (data) out.set(data, MIG_DATA_HEAD);
  return out;
}

/** Request: at least 8 bytes, argsz at least 8. Throws ProtocolError(EINVAL). */
export function decodeMigDataRead(body: Uint8Array): MigData {
  return decodeHead(body, "MIG_DATA_READ");
}

export function encodeMigDataRead(m: MigData): Uint8Array {
  return encode(m, null);
}

/** Reply: size data bytes (a view). Throws ProtocolError(EINVAL) when fewer follow. */
export function decodeMigDataReadReply(body: Uint8Array): MigData & { data: Uint8Array } {
  return decodeWithData(body, "MIG_DATA_READ reply");
}

/** data.length must equal size (RangeError). */
export function encodeMigDataReadReply(m: MigData): Uint8Array {
  return encode(m, checkDataLength(m.data, m.size, "MIG_DATA_READ reply"));
}

/** Request: size data bytes (a view). Throws ProtocolError(EINVAL) when fewer follow. */
export function decodeMigDataWrite(body: Uint8Array): MigData & { data: Uint8Array } {
  return decodeWithData(body, "MIG_DATA_WRITE");
}

export function encodeMigDataWrite(m: MigData): Uint8Array {
  return encode(m, checkDataLength(m.data, m.size, "MIG_DATA_WRITE"));
}
