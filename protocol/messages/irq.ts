// Interrupt commands.
//   DEVICE_GET_IRQ_INFO (7), both ways:  0: u32 argsz  4: u32 flags (IrqInfoFlag)  8: u32 index
//                                        12: u32 count (vectors of that index; 0 = none)
//   DEVICE_SET_IRQS (8), request:        0: u32 argsz  4: u32 flags  8: u32 index  12: u32 start
//                                        16: u32 count  20: u8 data[count] (DATA_BOOL only)
//   SET_IRQS has no reply body. Its eventfds travel as SCM_RIGHTS fds, counted by the caller.
// flags = exactly one DATA_* bit | exactly one ACTION_* bit. The decoder checks the structure
// only (sizes, argsz, flag combination); whether index, start and count fit the device, and
// whether the number of fds matches, is the server's business.

import { exactBytes, invalid, needBytes, readU32, writeU32 } from "../bytes.ts";
import { IrqSetFlag } from "../constants.ts";

export interface IrqInfo {
  argsz: number;
  flags: number;
  index: number;
  count: number;
}

export interface SetIrqs {
  argsz: number;
  flags: number;
  index: number;
  start: number;
  count: number;
  /** count bytes (0 or 1 each) with DATA_BOOL, a view into the body; null otherwise. */
  data: Uint8Array | null;
}

export const IRQ_INFO_SIZE = 16;
export const SET_IRQS_SIZE = 20;

/** Throws ProtocolError(EINVAL) for a body under 16 bytes or argsz under 16. */
export function decodeIrqInfo(body: Uint8Array): IrqInfo {
  needBytes(body, IRQ_INFO_SIZE, "DEVICE_GET_IRQ_INFO");
  const argsz = readU32(body, 0);
  if (argsz < IRQ_INFO_SIZE) invalid(`DEVICE_GET_IRQ_INFO: argsz ${argsz} is below ${IRQ_INFO_SIZE}`);
  return { argsz, flags: readU32(body, 4), index: readU32(body, 8), count: readU32(body, 12) };
}

export function encodeIrqInfo(i: IrqInfo): Uint8Array {
  const out = new Uint8Array(IRQ_INFO_SIZE);
  writeU32(out, 0, i.argsz, "argsz");
  writeU32(out, 4, i.flags, "flags");
  writeU32(out, 8, i.index, "index");
  writeU32(out, 12, i.count, "count");
  return out;
}

/** The DATA_* bit of SET_IRQS flags. */
export function irqSetData(flags: number): number {
  return flags & IrqSetFlag.DATA_TYPE_MASK;
}

/** The ACTION_* bit of SET_IRQS flags. */
export function irqSetAction(flags: number): number {
  return flags & IrqSetFlag.ACTION_TYPE_MASK;
}

const isOneBit = (v: number): boolean => v !== 0 && (v & (v - 1)) === 0;

/**
 * Throws ProtocolError(EINVAL) when: the body is under 20 bytes or argsz under 20; flags has not
 * exactly one DATA_* and one ACTION_* bit, or any other bit; DATA_BOOL and the body is not
 * 20 + count bytes; another data type and the body is not exactly 20 bytes.
 */
export function decodeSetIrqs(body: Uint8Array): SetIrqs {
  needBytes(body, SET_IRQS_SIZE, "DEVICE_SET_IRQS");
  const argsz = readU32(body, 0);
  const flags = readU32(body, 4);
  const count = readU32(body, 16);
  if (argsz < SET_IRQS_SIZE) invalid(`DEVICE_SET_IRQS: argsz ${argsz} is below ${SET_IRQS_SIZE}`);
  const hex = `0x${flags.toString(16)}`;
  if (flags & ~(IrqSetFlag.DATA_TYPE_MASK | IrqSetFlag.ACTION_TYPE_MASK)) {
    invalid(`DEVICE_SET_IRQS: flags ${hex} has unknown bits`);
  }
  if (!isOneBit(irqSetData(flags))) invalid(`DEVICE_SET_IRQS: flags ${hex} must have exactly one DATA_* bit`);
  if (!isOneBit(irqSetAction(flags)))
    invalid(`DEVICE_SET_IRQS: flags ${hex} must have exactly one ACTION_* bit`);
  let data: Uint8Array | null = null;
  if (irqSetData(flags) === IrqSetFlag.DATA_BOOL) {
    exactBytes(body, SET_IRQS_SIZE + count, "DEVICE_SET_IRQS with DATA_BOOL");
    data = body.subarray(SET_IRQS_SIZE);
  } else {
    exactBytes(body, SET_IRQS_SIZE, "DEVICE_SET_IRQS");
  }
  return { argsz, flags, index: readU32(body, 8), start: readU32(body, 12), count, data };
}

/** 20 bytes, plus data (which must be count bytes) with DATA_BOOL. Throws RangeError. */
export function encodeSetIrqs(s: SetIrqs): Uint8Array {
  const bool = irqSetData(s.flags) === IrqSetFlag.DATA_BOOL;
  if (bool && (s.data === null || s.data.length !== s.count)) {
    throw new RangeError(`DEVICE_SET_IRQS: DATA_BOOL needs ${s.count} data bytes`);
  }
  if (!bool && s.data !== null && s.data.length > 0)
    throw new RangeError("DEVICE_SET_IRQS: data only goes with DATA_BOOL");
  const out = new Uint8Array(SET_IRQS_SIZE + (bool ? s.count : 0));
  writeU32(out, 0, s.argsz, "argsz");
  writeU32(out, 4, s.flags, "flags");
  writeU32(out, 8, s.index, "index");
  writeU32(out, 12, s.start, "start");
  writeU32(out, 16, s.count, "count");
  if (bool && s.data) out.set(s.data, SET_IRQS_SIZE);
  return out;
}
