// DEVICE_FEATURE (16): get/set/probe a device feature (migration v2 and DMA dirty logging).
//   0: u32 argsz  4: u32 flags (feature index in bits 0-15 | GET 1<<16 | SET 1<<17 | PROBE 1<<18)
//   8: data (feature-specific; may be empty)
// Request argsz = room for the reply; reply argsz = its own size. GET and SET exclude each other
// unless PROBE is set. The typed payload codecs below read and write the `data` part only:
//   MIGRATION (1)           u64 flags (MigrationFlag)
//   MIG_DEVICE_STATE (2)    u32 device_state (MigState)  u32 data_fd (unused by vfio-user)
//   DMA_LOGGING_START (6)   u64 page_size  u32 num_ranges  u32 reserved  {u64 iova, u64 length}*
//   DMA_LOGGING_REPORT (8)  u64 iova  u64 length  u64 page_size  [u64 bitmap words (reply)]
// Whether a feature and operation are supported is the server's decision.

import { exactBytes, invalid, needBytes, readU32, readU64, writeU32, writeU64 } from "../bytes.ts";
import { FeatureFlag } from "../constants.ts";

export interface DeviceFeature {
  argsz: number;
  flags: number;
  /** The feature-specific bytes after the 8-byte head (a view when decoded). */
  data: Uint8Array;
}

export interface MigrationFeatureData {
  flags: bigint;
}

export interface MigDeviceState {
  deviceState: number;
  dataFd: number;
}

export interface DmaLoggingRange {
  iova: bigint;
  length: bigint;
}

export interface DmaLoggingStart {
  pageSize: bigint;
  ranges: DmaLoggingRange[];
}

export interface DmaLoggingReport {
  iova: bigint;
  length: bigint;
  pageSize: bigint;
  /** The dirty bitmap (u64 words, little-endian), in a reply; a view when decoded. */
  bitmap?: Uint8Array;
}

export const DEVICE_FEATURE_HEAD = 8;
const OP_BITS = FeatureFlag.GET | FeatureFlag.SET | FeatureFlag.PROBE;

/** The feature index (low 16 bits of flags). */
export function featureIndex(flags: number): number {
  return flags & FeatureFlag.INDEX_MASK;
}

/**
 * Throws ProtocolError(EINVAL) for a body under 8 bytes, argsz under 8, unknown flag bits, or
 * GET together with SET without PROBE.
 */
export function decodeDeviceFeature(body: Uint8Array): DeviceFeature {
  needBytes(body, DEVICE_FEATURE_HEAD, "DEVICE_FEATURE");
  const argsz = readU32(body, 0);
  const flags = readU32(body, 4);
  if (argsz < DEVICE_FEATURE_HEAD) invalid(`DEVICE_FEATURE: argsz ${argsz} is below ${DEVICE_FEATURE_HEAD}`);
  const hex = `0x${flags.toString(16)}`;
  if (flags & ~(FeatureFlag.INDEX_MASK | OP_BITS)) invalid(`DEVICE_FEATURE: flags ${hex} has unknown bits`);
  if (flags & FeatureFlag.GET && flags & FeatureFlag.SET && !(flags & FeatureFlag.PROBE)) {
    invalid(`DEVICE_FEATURE: flags ${hex} has GET and SET without PROBE`);
  }
  return { argsz, flags, data: body.subarray(DEVICE_FEATURE_HEAD) };
}

export function encodeDeviceFeature(f: DeviceFeature): Uint8Array {
  const out = new Uint8Array(DEVICE_FEATURE_HEAD + f.data.length);
  writeU32(out, 0, f.argsz, "argsz");
  writeU32(out, 4, f.flags, "flags");
  out.set(f.data, DEVICE_FEATURE_HEAD);
  return out;
}

/** MIGRATION data: exactly 8 bytes. Throws ProtocolError(EINVAL). */
export function decodeMigrationFeatureData(data: Uint8Array): MigrationFeatureData {
  exactBytes(data, 8, "DEVICE_FEATURE MIGRATION");
  return { flags: readU64(data, 0) };
}

export function encodeMigrationFeatureData(m: MigrationFeatureData): Uint8Array {
  const out = new Uint8Array(8);
  writeU64(out, 0, m.flags, "flags");
  return out;
}

/** MIG_DEVICE_STATE data: exactly 8 bytes. Throws ProtocolError(EINVAL). */
export function decodeMigDeviceState(data: Uint8Array): MigDeviceState {
  exactBytes(data, 8, "DEVICE_FEATURE MIG_DEVICE_STATE");
  return { deviceState: readU32(data, 0), dataFd: readU32(data, 4) };
}

export function encodeMigDeviceState(s: MigDeviceState): Uint8Array {
  const out = new Uint8Array(8);
  writeU32(out, 0, s.deviceState, "deviceState");
  writeU32(out, 4, s.dataFd, "dataFd");
  return out;
}

/** DMA_LOGGING_START data: exactly 16 + 16·num_ranges bytes. Throws ProtocolError(EINVAL). */
export function decodeDmaLoggingStart(data: Uint8Array): DmaLoggingStart {
  const what = "DEVICE_FEATURE DMA_LOGGING_START";
  needBytes(data, 16, what);
  const n = readU32(data, 8);
  if (n > (data.length - 16) / 16) invalid(`${what}: ${n} ranges do not fit ${data.length} bytes`);
  exactBytes(data, 16 + 16 * n, what);
  const ranges: DmaLoggingRange[] = new Array(n);
  for (let i = 0; i < n; i++)
    ranges[i] = { iova: readU64(data, 16 + 16 * i), length: readU64(data, 24 + 16 * i) };
  return { pageSize: readU64(data, 0), ranges };
}

export function encodeDmaLoggingStart(s: DmaLoggingStart): Uint8Array {
  const out = new Uint8Array(16 + 16 * s.ranges.length);
  writeU64(out, 0, s.pageSize, "pageSize");
  writeU32(out, 8, s.ranges.length, "num_ranges");
  s.ranges.forEach((r, i) => {
    writeU64(out, 16 + 16 * i, r.iova, "range.iova");
    writeU64(out, 24 + 16 * i, r.length, "range.length");
  });
  return out;
}

/**
 * DMA_LOGGING_REPORT data: 24 bytes, and in a reply the bitmap after them (bitmap undefined
 * when nothing follows). Throws ProtocolError(EINVAL) for fewer than 24 bytes.
 */
export function decodeDmaLoggingReport(data: Uint8Array): DmaLoggingReport {
  needBytes(data, 24, "DEVICE_FEATURE DMA_LOGGING_REPORT");
  const r: DmaLoggingReport = {
    iova: readU64(data, 0),
    length: readU64(data, 8),
    pageSize: readU64(data, 16),
  };
  if (data.length > 24) r.bitmap = data.subarray(24);
  return r;
}

export function encodeDmaLoggingReport(r: DmaLoggingReport): Uint8Array {
  const out = new Uint8Array(24 + (r.bitmap ? r.bitmap.length : 0));
  writeU64(out, 0, r.iova, "iova");
  writeU64(out, 8, r.length, "length");
  writeU64(out, 16, r.pageSize, "pageSize");
  if (r.bitmap) out.set(r.bitmap, 24);
  return out;
}

/**
 * Bytes of the bitmap a DMA_LOGGING_REPORT reply carries for `length` bytes of pages of
 * `pageSize`: one bit per page, rounded up to whole u64 words. RangeError for a zero page size.
 */
export function dmaLoggingBitmapSize(length: bigint, pageSize: bigint): bigint {
  if (pageSize <= 0n) throw new RangeError("pageSize must be positive");
  const pages = (length + pageSize - 1n) / pageSize;
  return ((pages + 63n) / 64n) * 8n;
}
