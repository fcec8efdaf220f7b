// DEVICE_GET_INFO (4): the same 16 bytes both ways.
//   0: u32 argsz  4: u32 flags (DeviceFlag)  8: u32 num_regions  12: u32 num_irqs
// In the request argsz is the largest reply the client takes (16) and the rest is zero; the
// reply fills everything in.

import { invalid, needBytes, readU32, writeU32 } from "../bytes.ts";

export interface DeviceInfo {
  argsz: number;
  flags: number;
  numRegions: number;
  numIrqs: number;
}

export const DEVICE_INFO_SIZE = 16;

/** Throws ProtocolError(EINVAL) for a body under 16 bytes or argsz under 16. Extra bytes are ignored. */
export function decodeDeviceInfo(body: Uint8Array): DeviceInfo {
  needBytes(body, DEVICE_INFO_SIZE, "DEVICE_GET_INFO");
  const argsz = readU32(body, 0);
  if (argsz < DEVICE_INFO_SIZE) invalid(`DEVICE_GET_INFO: argsz ${argsz} is below ${DEVICE_INFO_SIZE}`);
  return { argsz, flags: readU32(body, 4), numRegions: readU32(body, 8), numIrqs: readU32(body, 12) };
}

export function encodeDeviceInfo(d: DeviceInfo): Uint8Array {
  const out = new Uint8Array(DEVICE_INFO_SIZE);
  writeU32(out, 0, d.argsz, "argsz");
  writeU32(out, 4, d.flags, "flags");
  writeU32(out, 8, d.numRegions, "numRegions");
  writeU32(out, 12, d.numIrqs, "numIrqs");
  return out;
}
