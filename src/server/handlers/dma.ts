// DMA_MAP and DMA_UNMAP: build and shrink the client's IO address space (src/iommu). The rules
// live in address-space.ts: a map needs READ, page-aligned iova/size/offset, no wrap past 2^64
// (Errno.EINVAL), room under max_dma_maps (ENOSPC), no overlap (EEXIST), at most one fd, and an fd large
// enough for offset+size (Errno.EINVAL, so a later access can never raise SIGBUS). An unmap takes
// exactly one earlier map (ENOENT otherwise: part of an area, several areas or nothing), or
// everything with the ALL flag and address and size 0. Before the space sees an fd,
// dma-fd-policy.ts checks its access mode against the map's flags (EPERM) and that it is sealed
// against shrinking (Errno.EINVAL), so a client can neither gain write access nor SIGBUS the server.
//
// An unmap is asynchronous: the device is told first, transfers in flight on the area finish
// or fail, views are detached, and only then does the reply go out. The session waits for it
// before the next command, so no later command sees the area half gone.
import {
  DmaUnmapFlag,
  decodeDmaMap,
  decodeDmaUnmap,
  Errno,
  encodeDmaUnmapReply,
} from "../../../protocol/index.ts";
import { checkDmaFd } from "../../iommu/dma-fd-policy.ts";
import type { ReceivedFrame } from "../../transport/connection.ts";
import { VfuError } from "../../util/errors.ts";
import type { HandlerResult } from "../dispatch.ts";
import type { Session } from "../session.ts";

const UNMAP_REPLY_SIZE = 24;

export function handleDmaMap(s: Session, frame: ReceivedFrame): HandlerResult {
  const req = decodeDmaMap(frame.body);
  if (frame.fds.length > 1)
    throw new VfuError(Errno.EINVAL, `DMA_MAP takes at most one fd, ${frame.fds.length} came`);
  // A refusal leaves the fd in frame.fds, where the session closes it.
  if (frame.fds.length === 1) {
    checkDmaFd(frame.fds[0]!, req.flags, { allowUnsealed: s.options.allowUnsealedDmaFds === true });
  }
  // OWNERSHIP: the fd moves into the address space, which closes it if the map fails.
  const fd = frame.fds.length === 1 ? frame.fds.pop()! : -1;
  s.space.map({ iova: req.addr, size: req.size, flags: req.flags, fd, offset: fd >= 0 ? req.offset : 0n });
  return undefined;
}

export async function handleDmaUnmap(s: Session, frame: ReceivedFrame): Promise<HandlerResult> {
  const req = decodeDmaUnmap(frame.body);
  if (req.argsz < UNMAP_REPLY_SIZE) {
    throw new VfuError(
      Errno.EINVAL,
      `DMA_UNMAP argsz ${req.argsz} is smaller than the ${UNMAP_REPLY_SIZE}-byte reply`,
    );
  }
  if (req.flags & DmaUnmapFlag.GET_DIRTY_BITMAP) {
    throw new VfuError(
      Errno.EINVAL,
      "DMA_UNMAP with a dirty bitmap (migration v1) is not supported; use DEVICE_FEATURE logging",
    );
  }
  if (req.flags & ~DmaUnmapFlag.ALL)
    throw new VfuError(Errno.EINVAL, `DMA_UNMAP flags 0x${req.flags.toString(16)} unknown`);
  if (req.flags & DmaUnmapFlag.ALL) {
    if (req.addr !== 0n || req.size !== 0n)
      throw new VfuError(Errno.EINVAL, "DMA_UNMAP ALL needs address and size 0");
    await s.space.unmapAll();
  } else {
    await s.space.unmap(req.addr, req.size);
  }
  return {
    body: encodeDmaUnmapReply({ argsz: UNMAP_REPLY_SIZE, flags: req.flags, addr: req.addr, size: req.size }),
  };
}
