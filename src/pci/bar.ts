// Base Address Registers, sized the way hardware sizes them. A BAR's low bits are read-only type
// bits (bit 0: I/O; bits 2:1: 00 = 32-bit, 10 = 64-bit; bit 3: prefetchable) and the address bits
// below its size are read-only 0, so writing all-ones and reading back yields the size mask with
// the type bits, and writing the original value back restores it. This is pure write-mask work in
// the ConfigSpace: no code runs on a BAR write.
// - A 64-bit memory BAR takes a register pair: its index (even) holds the low half with the type
//   bits, the odd partner holds the high half of the address; the partner is no BAR of its own
//   (its vfio region has size 0).
// - Sizes are powers of two: memory ≥ 16 bytes (≤ 2 GiB when 32-bit), I/O 4..256 bytes.
// - The expansion ROM BAR (0x30): bits 31:11 address, bit 0 enable, size a power of two ≥ 2 KiB.
//   Without a ROM the register is read-only 0, so QEMU's 0xFFFFF800 probe reads back 0 (no ROM).
//
// BAR n is vfio region n, the ROM is region 6, the config space region 7 (vfio's PCI layout). Every
// declaration error is thrown by `layoutBars` when the device is defined, naming the BAR.
import { BarBits } from "../../protocol/index.ts";
import type { CacheAttr, MmapAreaSpec, RegionSpec } from "../device/region.ts";
import type { ConfigSpace } from "./config-space.ts";
import { PciHeader } from "./header.ts";

export { BarBits };

export interface BarSpec {
  /** BAR number 0-5; default: the next free one (a 64-bit BAR takes the next even pair). */
  index?: number;
  kind: "memory" | "io";
  /** Bytes: a power of two, ≥ 16 for memory, 4..256 for I/O. */
  size: number;
  /** 64-bit memory BAR (takes index and index + 1; index must be even). */
  is64?: boolean;
  prefetchable?: boolean;
  /** Access widths the device decodes (others are refused before the handler runs). */
  accessSizes?: readonly (1 | 2 | 4 | 8)[];
  /** Back the BAR with shared memory (size a page multiple); handlers may still be given. */
  memory?: boolean;
  /** Offer the memory to the client to mmap (needs `memory`). */
  mmap?: boolean;
  /** The parts of the BAR the client may mmap, each with its views (see RegionSpec.mmapAreas);
   * default: the whole BAR. Needs `mmap`. */
  mmapAreas?: readonly MmapAreaSpec[];
  /** Cache attribute of trapped accesses and the default mmap view: "WC" or "WB" makes trapped
   * writes go through the write-combining buffer; omitted or "UC": each write alone, in order. */
  cache?: CacheAttr;
  /** Region name in logs and listings (default `bar<N>`). */
  name?: string;
}

export interface RomSpec {
  /** The ROM image, served read-only as region 6 (zero-padded to `size`). */
  data: Uint8Array;
  /** BAR size: a power of two ≥ 2048 (default: the smallest that holds `data`). */
  size?: number;
}

/** A validated BAR. */
export interface BarLayout {
  index: number;
  name: string;
  kind: "memory" | "io";
  size: number;
  is64: boolean;
  prefetchable: boolean;
  spec: BarSpec;
}

export interface RomLayout {
  size: number;
  data: Uint8Array;
}

const MAX_BAR64 = 2 ** 52; // regions are sized by a JavaScript number

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/** Validate the declared BARs; returns them by index (holes and 64-bit partners undefined). */
export function layoutBars(specs: readonly BarSpec[]): (BarLayout | undefined)[] {
  const out: (BarLayout | undefined)[] = [];
  const used = new Set<number>();
  let next = 0;
  for (const spec of specs) {
    const is64 = spec.is64 === true;
    let index = spec.index;
    if (index === undefined) {
      index = next;
      if (is64 && index % 2 === 1) index++;
      while (used.has(index) || (is64 && used.has(index + 1))) index += is64 ? 2 : 1;
    }
    const name = spec.name ?? `bar${index}`;
    const what = `BAR ${index} (${name})`;
    if (!Number.isInteger(index) || index < 0 || index > 5) throw new Error(`${what}: index must be 0-5`);
    if (spec.kind !== "memory" && spec.kind !== "io")
      throw new Error(`${what}: kind must be "memory" or "io", not ${String(spec.kind)}`);
    if (used.has(index)) throw new Error(`${what}: BAR ${index} is declared twice or is a 64-bit partner`);
    if (is64) {
      if (spec.kind !== "memory") throw new Error(`${what}: only memory BARs can be 64-bit`);
      if (index % 2 !== 0 || index === 5)
        throw new Error(`${what}: a 64-bit BAR takes an even index and its odd partner (0, 2 or 4)`);
      if (used.has(index + 1)) throw new Error(`${what}: its partner BAR ${index + 1} is already declared`);
    }
    if (spec.kind === "io") {
      if (spec.prefetchable) throw new Error(`${what}: an I/O BAR cannot be prefetchable`);
      if (spec.memory || spec.mmap) throw new Error(`${what}: an I/O BAR cannot be memory-backed or mmapped`);
      if (!isPowerOfTwo(spec.size) || spec.size < 4 || spec.size > 256)
        throw new Error(`${what}: I/O size ${spec.size} must be a power of two from 4 to 256 bytes`);
    } else {
      const max = is64 ? MAX_BAR64 : 2 ** 31;
      if (!isPowerOfTwo(spec.size) || spec.size < 16 || spec.size > max)
        throw new Error(
          `${what}: memory size ${spec.size} must be a power of two from 16 bytes to ${is64 ? "2^52" : "2 GiB"}` +
            (!is64 && spec.size > max ? " (declare is64 for larger BARs)" : ""),
        );
    }
    if (spec.mmap && !spec.memory) throw new Error(`${what}: mmap needs memory: true`);
    if (spec.memory && spec.size % 4096 !== 0)
      throw new Error(`${what}: a memory-backed BAR must be a multiple of 4096 bytes, not ${spec.size}`);
    for (const s of spec.accessSizes ?? []) {
      if (![1, 2, 4, 8].includes(s)) throw new Error(`${what}: access size ${s} is not 1, 2, 4 or 8`);
    }
    used.add(index);
    if (is64) used.add(index + 1);
    out[index] = {
      index,
      name,
      kind: spec.kind,
      size: spec.size,
      is64,
      prefetchable: spec.prefetchable === true,
      spec,
    };
    next = index + (is64 ? 2 : 1);
  }
  return out;
}

export function layoutRom(rom: RomSpec | undefined): RomLayout | null {
  if (!rom) return null;
  if (!(rom.data instanceof Uint8Array)) throw new Error("rom.data must be a Uint8Array");
  let size = rom.size ?? 2048;
  if (rom.size === undefined) while (size < rom.data.length) size *= 2;
  if (!isPowerOfTwo(size) || size < 2048 || size > 2 ** 24)
    throw new Error(`rom.size ${size} must be a power of two from 2 KiB to 16 MiB`);
  if (rom.data.length > size) throw new Error(`rom.data (${rom.data.length} bytes) exceeds rom.size ${size}`);
  const data = new Uint8Array(size);
  data.set(rom.data);
  return { size, data };
}

/** Type bits a BAR register reads back in its low nibble. */
export function barTypeBits(bar: BarLayout): number {
  if (bar.kind === "io") return BarBits.IO;
  return (bar.is64 ? BarBits.MEM_TYPE_64 : 0) | (bar.prefetchable ? BarBits.PREFETCH : 0);
}

/** Declare the six BAR registers and the ROM BAR: type bits read-only, address bits above the size
 * writable, everything else read-only 0. */
export function defineBars(cs: ConfigSpace, bars: readonly (BarLayout | undefined)[], rom: RomLayout | null) {
  for (let i = 0; i < 6; i++) cs.define(PciHeader.BAR0 + 4 * i, 4, { value: 0 });
  for (const bar of bars) {
    if (!bar) continue;
    const reg = PciHeader.BAR0 + 4 * bar.index;
    const lowBits = bar.kind === "io" ? 0x3n : 0xfn;
    const mask = ~(BigInt(bar.size) - 1n) & ~lowBits & 0xffff_ffff_ffff_ffffn;
    cs.define(reg, 4, { value: barTypeBits(bar), writable: Number(mask & 0xffff_ffffn) });
    if (bar.is64) cs.define(reg + 4, 4, { value: 0, writable: Number(mask >> 32n) });
  }
  cs.define(PciHeader.ROM_ADDRESS, 4, {
    value: 0,
    writable: rom ? ((~(rom.size - 1) & 0xffff_f800) | BarBits.ROM_ENABLE) >>> 0 : 0,
  });
}

/** The vfio regions 0-5 (BARs) and 6 (ROM). */
export function barRegionSpecs(
  bars: readonly (BarLayout | undefined)[],
  rom: RomLayout | null,
  frameworkAccess: ReadonlySet<number>,
): RegionSpec[] {
  const specs: RegionSpec[] = [];
  for (let i = 0; i < 6; i++) {
    const bar = bars[i];
    if (!bar) {
      specs.push({ index: i, name: `bar${i}-unused`, size: 0 });
      continue;
    }
    const s = bar.spec;
    specs.push({
      index: i,
      name: bar.name,
      size: bar.size,
      // A BAR that also holds framework registers (the MSI-X table) checks widths itself.
      accessSizes: frameworkAccess.has(i) ? undefined : s.accessSizes,
      memory: s.memory,
      mmap: s.mmap,
      mmapAreas: s.mmapAreas,
      cache: s.cache,
    });
  }
  specs.push({ index: 6, name: "rom", size: rom ? rom.size : 0, writable: false });
  return specs;
}
