// The project's own DEVICE_GET_REGION_INFO capability: the cache attributes of a region and of its
// mmap views (VFU_REGION_INFO_CAP_CACHE). It rides in the ordinary capability chain, so a
// client that does not know it skips it by `next`, as VFIO clients skip any unknown id.
//
// Id 0x8C01. VFIO hands out region-info capability ids from 1 upwards (SPARSE_MMAP 1, TYPE 2,
// MSIX_MAPPABLE 3, the obsolete NVLINK2 ones 4 and 5, SPARSE_MMAP_FDS 16 in QEMU's development
// tree); an id with the top bit set is as far from that sequence as a u16 allows, so it cannot
// collide with one VFIO adds later. 0xC is for "cache"; 01 numbers our first capability.
//
// Version 1, every field little-endian, offsets from the start of the capability:
//   +0  u16 id = 0x8C01          +2  u16 version = 1        +4  u32 next (0 ends the chain)
//   +8  u8  cache of trapped accesses (REGION_READ/WRITE): 0 UC, 1 WC, 2 WB
//   +9  u8  flags: bit 0 COMBINES = trapped writes are write-combined by the server
//   +10 u16 nr_views
//   +12 u32 reserved, 0
//   +16 nr_views views of 32 bytes each:
//       +0  u64 offset   first byte of the view in the region (an mmap area's offset)
//       +8  u64 size     bytes the view maps (the area's size)
//       +16 u64 cookie   the fd offset to pass to mmap for this view
//       +24 u8  cache    0 UC, 1 WC, 2 WB: how the client must treat the mapping
//       +25 u8  flags    bit 0 DEFAULT = the view a client that ignores this capability maps
//       +26 u16 area     index of the SPARSE_MMAP area the view maps
//       +28 u32 reserved, 0
// Total 16 + 32·nr_views bytes (8-aligned). Unknown flag bits and reserved fields are written 0
// and ignored when read. A version other than 1 is not decoded (the caller treats it as unknown).

import { invalid, readU16, readU32, readU64, writeU16, writeU64 } from "../bytes.ts";

export const VFU_REGION_INFO_CAP_CACHE = 0x8c01;
export const REGION_CACHE_CAP_VERSION = 1;

export type CacheAttrName = "UC" | "WC" | "WB";

const CODES: readonly CacheAttrName[] = ["UC", "WC", "WB"];

export const RegionCacheFlag = { COMBINES: 0x1 } as const;
export const CacheViewFlag = { DEFAULT: 0x1 } as const;

export interface CacheView {
  offset: bigint;
  size: bigint;
  cookie: bigint;
  cache: CacheAttrName;
  isDefault: boolean;
  area: number;
}

export interface RegionCacheInfo {
  /** Attribute of trapped accesses. */
  cache: CacheAttrName;
  /** Trapped writes are combined by the server. */
  combines: boolean;
  views: CacheView[];
}

/** The capability's bytes after its 8-byte header, as a RawRegionCap carries them. */
const HEAD = 8; // body bytes before the first view (cap offsets 8..15)
const VIEW = 32;

function code(attr: CacheAttrName, what: string): number {
  const i = CODES.indexOf(attr);
  if (i < 0) throw new RangeError(`${what}: cache ${String(attr)} is not UC, WC or WB`);
  return i;
}

function attr(byte: number, what: string): CacheAttrName {
  const a = CODES[byte];
  if (a === undefined)
    invalid(`region cache capability: ${what} cache ${byte} is not 0 (UC), 1 (WC) or 2 (WB)`);
  return a;
}

/** The capability's body (what follows its header) for `encodeRegionInfoReply`'s raw caps.
 * Throws RangeError for values that do not fit. */
export function encodeRegionCacheCap(info: RegionCacheInfo): {
  id: number;
  version: number;
  data: Uint8Array;
} {
  if (info.views.length > 0xffff) throw new RangeError("region cache capability: over 65535 views");
  const data = new Uint8Array(HEAD + VIEW * info.views.length);
  data[0] = code(info.cache, "region");
  data[1] = info.combines ? RegionCacheFlag.COMBINES : 0;
  writeU16(data, 2, info.views.length, "nr_views");
  info.views.forEach((v, i) => {
    const at = HEAD + VIEW * i;
    writeU64(data, at, v.offset, "view.offset");
    writeU64(data, at + 8, v.size, "view.size");
    writeU64(data, at + 16, v.cookie, "view.cookie");
    data[at + 24] = code(v.cache, `view ${i}`);
    data[at + 25] = v.isDefault ? CacheViewFlag.DEFAULT : 0;
    writeU16(data, at + 26, v.area, "view.area");
  });
  return { id: VFU_REGION_INFO_CAP_CACHE, version: REGION_CACHE_CAP_VERSION, data };
}

/** Decode the body of a capability with our id. Returns null for a version other than 1 (a
 * client then ignores it, as it would an unknown id). Throws ProtocolError(EINVAL) for a body too
 * short for its views or an attribute code over 2. */
export function decodeRegionCacheCap(cap: { version: number; data: Uint8Array }): RegionCacheInfo | null {
  if (cap.version !== REGION_CACHE_CAP_VERSION) return null;
  const d = cap.data;
  if (d.length < HEAD) invalid(`region cache capability: ${d.length + 8} bytes, needs at least 16`);
  const n = readU16(d, 2);
  if (d.length < HEAD + VIEW * n)
    invalid(`region cache capability: ${n} views need ${16 + VIEW * n} bytes, it has ${d.length + 8}`);
  readU32(d, 4); // reserved
  const views: CacheView[] = [];
  for (let i = 0; i < n; i++) {
    const at = HEAD + VIEW * i;
    views.push({
      offset: readU64(d, at),
      size: readU64(d, at + 8),
      cookie: readU64(d, at + 16),
      cache: attr(d[at + 24]!, `view ${i}`),
      isDefault: (d[at + 25]! & CacheViewFlag.DEFAULT) !== 0,
      area: readU16(d, at + 26),
    });
  }
  return {
    cache: attr(d[0]!, "region"),
    combines: (d[1]! & RegionCacheFlag.COMBINES) !== 0,
    views,
  };
}
