// DEVICE_GET_INFO, DEVICE_GET_REGION_INFO, DEVICE_GET_REGION_IO_FDS and DEVICE_RESET: what the
// device is and how to put it back in its power-on state.
import {
  decodeDeviceInfo,
  decodeDeviceReset,
  decodeRegionInfo,
  decodeRegionIoFds,
  Errno,
  encodeDeviceInfo,
  encodeRegionCacheCap,
  encodeRegionInfoReply,
  encodeRegionIoFdsReply,
  type RegionCap,
  RegionCapId,
  RegionFlag,
} from "../../../protocol/index.ts";
import type { ReceivedFrame } from "../../transport/connection.ts";
import { VfuError } from "../../util/errors.ts";
import type { HandlerResult } from "../dispatch.ts";
import type { Session } from "../session.ts";

const DEVICE_INFO_SIZE = 16;
const REGION_INFO_SIZE = 32;
const IO_FDS_HEAD_SIZE = 16;

export function handleDeviceGetInfo(s: Session, frame: ReceivedFrame): HandlerResult {
  const req = decodeDeviceInfo(frame.body);
  if (req.argsz < DEVICE_INFO_SIZE) {
    throw new VfuError(
      Errno.EINVAL,
      `DEVICE_GET_INFO argsz ${req.argsz} is smaller than the ${DEVICE_INFO_SIZE}-byte reply`,
    );
  }
  return {
    body: encodeDeviceInfo({
      argsz: DEVICE_INFO_SIZE,
      flags: s.device.flags,
      numRegions: s.device.numRegions,
      numIrqs: s.device.irqs.numIrqs,
    }),
  };
}

export function handleRegionInfo(s: Session, frame: ReceivedFrame): HandlerResult {
  const req = decodeRegionInfo(frame.body);
  if (req.argsz < REGION_INFO_SIZE) {
    throw new VfuError(
      Errno.EINVAL,
      `DEVICE_GET_REGION_INFO argsz ${req.argsz} is smaller than ${REGION_INFO_SIZE}`,
    );
  }
  if (req.index >= s.device.numRegions) {
    throw new VfuError(
      Errno.EINVAL,
      `region ${req.index} does not exist (the device has ${s.device.numRegions})`,
    );
  }
  const region = s.device.region(req.index);
  if (!region || region.size === 0) {
    return {
      body: encodeRegionInfoReply({ flags: 0, index: req.index, size: 0n, offset: 0n, caps: [] }, req.argsz),
    };
  }
  let flags = 0;
  if (region.readable) flags |= RegionFlag.READ;
  if (region.writable) flags |= RegionFlag.WRITE;
  const caps: RegionCap[] = [...s.device.regionCaps(req.index)];
  // A client that said it receives no fds (max_msg_fds 0) must not get one: the region is then
  // offered without MMAP and reached by REGION_READ/WRITE (a client that sized its control buffer
  // for 0 fds would see an fd as a broken reply).
  // With `mmap: false` (the --no-mmap switch) no region is offered for mmap at all, so QEMU keeps
  // posting its MMIO writes (README: mmap or posted writes).
  const offerMmap = s.options.mmap !== false && (s.clientCaps?.maxMsgFds ?? 1) >= 1;
  const fd = offerMmap ? region.mmapFd : null;
  if (fd !== null) {
    flags |= RegionFlag.MMAP;
    if (!caps.some((c) => c.id === RegionCapId.SPARSE_MMAP)) {
      caps.unshift({
        id: RegionCapId.SPARSE_MMAP,
        version: 1,
        areas: region.mmapAreas.map((a) => ({ offset: BigInt(a.offset), size: BigInt(a.size) })),
      });
    }
  }
  // The project's cache capability (protocol/messages/region-cache.ts) on every region that has a
  // notable attribute: one that combines writes or offers views. Plain UC register regions carry
  // none, so their replies stay what any vfio-user server sends.
  const views = fd !== null ? region.mmapViews() : [];
  if (region.combines || views.length > 0) {
    caps.push(
      encodeRegionCacheCap({
        cache: region.cache,
        combines: region.combines,
        views: views.map((v) => ({
          offset: BigInt(v.offset),
          size: BigInt(v.size),
          cookie: BigInt(v.cookie),
          cache: v.cache,
          isDefault: v.isDefault,
          area: v.area,
        })),
      }),
    );
  }
  const body = encodeRegionInfoReply(
    { flags, index: req.index, size: BigInt(region.size), offset: 0n, caps },
    req.argsz,
  );
  // The fd goes only with a reply that carries the caps describing what may be mapped; a client
  // whose argsz was too small retries with a larger one and gets it then.
  const capsFit =
    caps.length === 0 || new DataView(body.buffer, body.byteOffset).getUint32(0, true) <= req.argsz;
  return { body, fds: fd !== null && capsFit ? [fd] : [] };
}

export function handleRegionIoFds(s: Session, frame: ReceivedFrame): HandlerResult {
  const req = decodeRegionIoFds(frame.body);
  if (req.argsz < IO_FDS_HEAD_SIZE) {
    throw new VfuError(
      Errno.EINVAL,
      `DEVICE_GET_REGION_IO_FDS argsz ${req.argsz} is smaller than ${IO_FDS_HEAD_SIZE}`,
    );
  }
  if (req.flags !== 0 || req.count !== 0)
    throw new VfuError(Errno.EINVAL, "DEVICE_GET_REGION_IO_FDS flags and count must be 0");
  if (req.index >= s.device.numRegions)
    throw new VfuError(Errno.EINVAL, `region ${req.index} does not exist`);
  // No region of ours offers ioeventfds: an empty list tells the client to use messages.
  return {
    body: encodeRegionIoFdsReply(
      { argsz: IO_FDS_HEAD_SIZE, flags: 0, index: req.index, count: 0, entries: [] },
      req.argsz,
    ),
  };
}

export async function handleDeviceReset(s: Session, frame: ReceivedFrame): Promise<HandlerResult> {
  decodeDeviceReset(frame.body);
  await s.device.reset();
  return undefined;
}
