// What the device says about itself: DEVICE_GET_INFO, region infos (with the argsz retry the
// protocol asks for, the capability chain and the project's cache capability decoded), region
// ioeventfds, interrupt infos, a region found by its TYPE capability, and a platform device's
// device-tree source.

import {
  Command,
  type DeviceInfo,
  decodeDeviceInfo,
  decodeIrqInfo,
  decodeRegionCacheCap,
  decodeRegionInfoReply,
  decodeRegionIoFdsReply,
  encodeDeviceInfo,
  encodeIrqInfo,
  encodeRegionInfo,
  encodeRegionIoFds,
  type IoFdEntry,
  type IrqInfo,
  type RegionCacheInfo,
  type RegionCap,
  RegionCapId,
  type RegionInfo,
  VFU_REGION_INFO_CAP_CACHE,
} from "../../protocol/index.ts";
import { VFU_REGION_TYPE, VfuRegionSubtype } from "../platform/region-type.ts";
import { closeFds } from "../util/fds.ts";
import type { ClientCore } from "./client-core.ts";
import { regionRead } from "./region-access.ts";

export interface RegionInfoResult extends RegionInfo {
  caps: RegionCap[];
  /** The project's cache capability decoded (attribute of trapped accesses, mmap views), or
   * null when the server sent none (or a version this client does not know). */
  cache: RegionCacheInfo | null;
  /** The fd to mmap when the region is MMAP-capable. OWNERSHIP: the caller's. */
  fd: number | null;
}

export async function getDeviceInfo(core: ClientCore): Promise<DeviceInfo> {
  const r = await core.request(
    Command.DEVICE_GET_INFO,
    encodeDeviceInfo({ argsz: 16, flags: 0, numRegions: 0, numIrqs: 0 }),
  );
  return decodeDeviceInfo(r.body);
}

/** Region info with its capabilities, retrying with a larger argsz as the protocol asks. */
export async function getRegionInfo(core: ClientCore, index: number, argsz = 32): Promise<RegionInfoResult> {
  const ask = async (size: number) => {
    const r = await core.request(
      Command.DEVICE_GET_REGION_INFO,
      encodeRegionInfo({ argsz: size, flags: 0, index, capOffset: 0, size: 0n, offset: 0n }),
    );
    try {
      return { reply: decodeRegionInfoReply(r.body), fds: r.fds };
    } catch (err) {
      closeFds(r.fds);
      throw err;
    }
  };
  let { reply, fds } = await ask(argsz);
  if (reply.argsz > argsz) {
    closeFds(fds);
    ({ reply, fds } = await ask(reply.argsz));
  }
  let cache: RegionCacheInfo | null = null;
  try {
    const raw = reply.caps.find((c) => c.id === VFU_REGION_INFO_CAP_CACHE);
    if (raw && "data" in raw) cache = decodeRegionCacheCap(raw);
  } catch (err) {
    closeFds(fds);
    throw err;
  }
  return { ...reply, cache, fd: fds[0] ?? null };
}

/** The first region whose info carries a TYPE capability {type, subtype}, or null. Fds offered
 * with the region infos looked at are closed (the result's `fd` is null). */
export async function findRegionByType(
  core: ClientCore,
  type: number,
  subtype: number,
): Promise<RegionInfoResult | null> {
  const { numRegions } = await getDeviceInfo(core);
  for (let index = 0; index < numRegions; index++) {
    const info = await getRegionInfo(core, index);
    if (info.fd !== null) closeFds([info.fd]);
    const found = info.caps.some(
      (c) => c.id === RegionCapId.TYPE && "type" in c && c.type === type && c.subtype === subtype,
    );
    if (found) return { ...info, fd: null };
  }
  return null;
}

/** A platform device's device-tree source, read from the region typed {VFU_REGION_TYPE,
 * DEVICE_TREE} (src/platform/region-type.ts) in transfers the server accepts; null when the
 * device has no such region. */
export async function readDeviceTree(core: ClientCore): Promise<string | null> {
  const info = await findRegionByType(core, VFU_REGION_TYPE, VfuRegionSubtype.DEVICE_TREE);
  if (!info) return null;
  const size = Number(info.size);
  const text = new Uint8Array(size);
  const chunk = core.maxTransfer;
  for (let at = 0; at < size; at += chunk) {
    text.set(await regionRead(core, info.index, at, Math.min(chunk, size - at)), at);
  }
  return new TextDecoder("utf-8", { fatal: true }).decode(text);
}

export async function getRegionIoFds(
  core: ClientCore,
  index: number,
  argsz = 16,
): Promise<{ entries: IoFdEntry[]; fds: number[] }> {
  const r = await core.request(
    Command.DEVICE_GET_REGION_IO_FDS,
    encodeRegionIoFds({ argsz, flags: 0, index, count: 0 }),
  );
  try {
    return { entries: decodeRegionIoFdsReply(r.body).entries, fds: r.fds };
  } catch (err) {
    closeFds(r.fds);
    throw err;
  }
}

export async function getIrqInfo(core: ClientCore, index: number): Promise<IrqInfo> {
  const r = await core.request(
    Command.DEVICE_GET_IRQ_INFO,
    encodeIrqInfo({ argsz: 16, flags: 0, index, count: 0 }),
  );
  return decodeIrqInfo(r.body);
}
