// Config-space helpers for PCI device tests, done the way a driver does them over region 7:
// - registers of 1, 2 or 4 bytes, little-endian;
// - the capability lists: the standard list from the Capabilities Pointer (0x34, when Status says
//   there is one), each entry an ID byte and a next byte in [0x40, 0x100); the PCI Express extended
//   list from 0x100 (config spaces of 4096 bytes only), each entry a 32-bit header with the ID in
//   bits 15:0, the version in 19:16 and the next offset in 31:20. A pointer out of range or a loop
//   is an error naming it;
// - BAR sizing: with memory and I/O decode off, write all-ones, read back the size mask with the
//   type bits, write the original value back (both halves of a 64-bit BAR; the expansion ROM with
//   its enable bit clear), then the Command register as it was;
// - Command bits (memory and I/O decode, Bus Master) set or cleared by read-modify-write.

import { BarBits, PciCommand, PciHeader, PciRegion, PciStatus } from "../../protocol/index.ts";
import { closeFds } from "../util/fds.ts";
import type { ClientCore } from "./client-core.ts";
import { getRegionInfo } from "./device-info.ts";
import { regionRead, regionWrite } from "./region-access.ts";

const STD_CAP_START = 0x40;
const STD_CAP_END = 0x100;
const EXT_CAP_START = 0x100;
/** A standard entry takes at least 4 bytes in [0x40, 0x100), an extended one 4 in [0x100, 0x1000). */
const MAX_STD_CAPS = (STD_CAP_END - STD_CAP_START) / 4;

export interface PciCapability {
  id: number;
  offset: number;
  /** True for a PCI Express extended capability. */
  extended: boolean;
  /** The extended capability's version (header bits 19:16); null for a standard one. */
  version: number | null;
}

export type BarKind = "memory" | "io" | "rom" | "none";

export interface BarSizing {
  /** 0-5, or 6 for the expansion ROM (PciRegion.ROM). */
  index: number;
  /** "none": the BAR is not implemented (it reads back 0). */
  kind: BarKind;
  is64: boolean;
  prefetchable: boolean;
  /** Bytes the BAR decodes (0 when not implemented). */
  size: bigint;
  /** The register as it was (and is again): address and type bits (for a 64-bit BAR, the whole
   * 64-bit value). */
  value: bigint;
}

export async function configRead(core: ClientCore, offset: number, size: 1 | 2 | 4): Promise<number> {
  const d = await regionRead(core, PciRegion.CONFIG, offset, size);
  const v = new DataView(d.buffer, d.byteOffset, size);
  return size === 1 ? v.getUint8(0) : size === 2 ? v.getUint16(0, true) : v.getUint32(0, true);
}

export async function configWrite(
  core: ClientCore,
  offset: number,
  size: 1 | 2 | 4,
  value: number,
): Promise<void> {
  const d = new Uint8Array(size);
  const v = new DataView(d.buffer);
  if (size === 1) v.setUint8(0, value & 0xff);
  else if (size === 2) v.setUint16(0, value & 0xffff, true);
  else v.setUint32(0, value >>> 0, true);
  await regionWrite(core, PciRegion.CONFIG, offset, d);
}

/** The whole config space (256 or 4096 bytes, as region 7's info says), in transfers the server
 * accepts. */
export async function readConfigSpace(core: ClientCore): Promise<Uint8Array> {
  const info = await getRegionInfo(core, PciRegion.CONFIG);
  if (info.fd !== null) closeFds([info.fd]);
  const size = Number(info.size);
  const out = new Uint8Array(size);
  for (let at = 0; at < size; at += core.maxTransfer) {
    out.set(await regionRead(core, PciRegion.CONFIG, at, Math.min(core.maxTransfer, size - at)), at);
  }
  return out;
}

/** Both capability lists of a config space image: standard ones in list order, then extended. */
export function walkCapabilities(config: Uint8Array): PciCapability[] {
  const dv = new DataView(config.buffer, config.byteOffset, config.length);
  const caps: PciCapability[] = [];
  const hex = (n: number) => `0x${n.toString(16)}`;
  if (config.length >= STD_CAP_END && dv.getUint16(PciHeader.STATUS, true) & PciStatus.CAP_LIST) {
    const seen = new Set<number>();
    let at = config[PciHeader.CAPABILITIES]! & 0xfc;
    let from = PciHeader.CAPABILITIES;
    while (at !== 0) {
      if (at < STD_CAP_START || at > STD_CAP_END - 2)
        throw new Error(`capability list: pointer ${hex(at)} at ${hex(from)} is outside [0x40, 0x100)`);
      if (seen.has(at) || seen.size >= MAX_STD_CAPS)
        throw new Error(`capability list: the pointer at ${hex(from)} loops back to ${hex(at)}`);
      seen.add(at);
      caps.push({ id: config[at]!, offset: at, extended: false, version: null });
      from = at + 1;
      at = config[at + 1]! & 0xfc;
    }
  }
  if (config.length > EXT_CAP_START) {
    const seen = new Set<number>();
    let at = EXT_CAP_START;
    let from = EXT_CAP_START;
    while (at !== 0) {
      if (at < EXT_CAP_START || at > config.length - 4)
        throw new Error(
          `extended capability list: pointer ${hex(at)} at ${hex(from)} is outside [0x100, ${hex(config.length)})`,
        );
      if (seen.has(at))
        throw new Error(`extended capability list: the pointer at ${hex(from)} loops back to ${hex(at)}`);
      seen.add(at);
      const header = dv.getUint32(at, true);
      // An all-zero header at 0x100 says there are none; all-ones is a function that is not there.
      if (header === 0 || header === 0xffff_ffff) break;
      caps.push({ id: header & 0xffff, offset: at, extended: true, version: (header >>> 16) & 0xf });
      from = at;
      at = (header >>> 20) & 0xffc;
    }
  }
  return caps;
}

export async function listCapabilities(core: ClientCore): Promise<PciCapability[]> {
  return walkCapabilities(await readConfigSpace(core));
}

/** Set the Command bits in `set` and clear those in `clear`; resolves with the register as it
 * reads back (bits the function does not implement stay 0). */
export async function updateCommand(core: ClientCore, set: number, clear: number): Promise<number> {
  const cmd = await configRead(core, PciHeader.COMMAND, 2);
  await configWrite(core, PciHeader.COMMAND, 2, (cmd | set) & ~clear & 0xffff);
  return configRead(core, PciHeader.COMMAND, 2);
}

/** Size BAR `index` (0-5) or the expansion ROM (6) the way firmware does. */
export async function sizeBar(core: ClientCore, index: number): Promise<BarSizing> {
  if (!Number.isInteger(index) || index < 0 || index > PciRegion.ROM)
    throw new RangeError(`BAR index ${index} is not 0-5 or 6 (the ROM)`);
  const rom = index === PciRegion.ROM;
  const reg = rom ? PciHeader.ROM_ADDRESS : PciHeader.BAR0 + 4 * index;
  if (!rom && index % 2 === 1) {
    const below = await configRead(core, reg - 4, 4);
    if (!(below & BarBits.IO) && (below & 0x6) === BarBits.MEM_TYPE_64)
      throw new RangeError(`BAR ${index} is the upper half of 64-bit BAR ${index - 1}`);
  }
  const cmd = await configRead(core, PciHeader.COMMAND, 2);
  const decode = PciCommand.IO | PciCommand.MEMORY;
  if (cmd & decode) await configWrite(core, PciHeader.COMMAND, 2, cmd & ~decode);
  try {
    const lo = await configRead(core, reg, 4);
    const io = !rom && (lo & BarBits.IO) !== 0;
    const is64 = !rom && !io && (lo & 0x6) === BarBits.MEM_TYPE_64;
    const probe = async (at: number, ones: number, keep: number) => {
      await configWrite(core, at, 4, ones);
      const mask = await configRead(core, at, 4);
      await configWrite(core, at, 4, keep);
      return mask;
    };
    // The ROM's enable bit stays clear while sizing (it is restored with the original value).
    const loMask = await probe(reg, rom ? 0xffff_f800 : 0xffff_ffff, lo);
    const hi = is64 ? await configRead(core, reg + 4, 4) : 0;
    const hiMask = is64 ? await probe(reg + 4, 0xffff_ffff, hi) : 0;
    const value = (BigInt(hi) << 32n) | BigInt(lo);
    let kind: BarKind;
    let mask: bigint;
    if (rom) {
      kind = "rom";
      mask = BigInt((loMask & 0xffff_f800) >>> 0) | 0xffff_ffff_0000_0000n;
    } else if (io) {
      kind = "io";
      let m = loMask & 0xffff_fffc;
      // An I/O BAR that decodes only 16 address bits reads its upper half back as 0.
      if (m !== 0 && (m & 0xffff_0000) === 0) m = (m | 0xffff_0000) >>> 0;
      mask = BigInt(m >>> 0) | 0xffff_ffff_0000_0000n;
    } else {
      kind = "memory";
      mask = BigInt((loMask & 0xffff_fff0) >>> 0) | (is64 ? BigInt(hiMask) << 32n : 0xffff_ffff_0000_0000n);
    }
    if ((mask & 0xffff_ffffn) === 0n && (!is64 || hiMask === 0)) {
      return { index, kind: "none", is64: false, prefetchable: false, size: 0n, value };
    }
    const size = (~mask & 0xffff_ffff_ffff_ffffn) + 1n;
    const prefetchable = kind === "memory" && (lo & BarBits.PREFETCH) !== 0;
    return { index, kind, is64, prefetchable, size, value };
  } finally {
    if (cmd & decode) await configWrite(core, PciHeader.COMMAND, 2, cmd);
  }
}

/** Size every BAR (skipping the upper halves of 64-bit ones) and the ROM. */
export async function sizeBars(core: ClientCore): Promise<BarSizing[]> {
  const out: BarSizing[] = [];
  for (let i = 0; i < 6; i++) {
    const bar = await sizeBar(core, i);
    out.push(bar);
    if (bar.is64) i++;
  }
  out.push(await sizeBar(core, PciRegion.ROM));
  return out;
}
