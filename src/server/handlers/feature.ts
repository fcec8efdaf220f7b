// DEVICE_FEATURE, MIG_DATA_READ and MIG_DATA_WRITE.
//
// DMA dirty logging is served from the session's address space (src/iommu/dirty.ts):
// - DMA_LOGGING_START (SET): page_size, num_ranges, ranges. The page size must be a power of two;
//   a smaller one than the address space's page size is raised to it, and the reply (a copy of the
//   request) carries the size chosen. num_ranges 0 logs every write. Errno.EINVAL for empty, wrapping or
//   overlapping ranges, Errno.E2BIG for more than 256, EBUSY when logging is on already.
// - DMA_LOGGING_STOP (SET): no data; stops and forgets the log (also when it was off).
// - DMA_LOGGING_REPORT (GET): iova, length, page_size → the same 24 bytes and the bitmap (u64 LE
//   words, bit k = page iova + k·page_size), cleared as it is read. Errno.EINVAL while logging is off or
//   for a bad range or page size; Errno.E2BIG when the bitmap exceeds the client's max_data_xfer_size.
//   When the request's argsz leaves no room for the bitmap, the reply carries the 24 bytes alone
//   with argsz set to the size needed and nothing is cleared (the client asks again).
// - PROBE (with or without GET/SET) answers with a copy of the request when the feature supports
//   the operations named; Errno.EINVAL when it does not.
// Every other feature is answered Errno.ENOTTY ("not supported", as the kernel does), after the message
// itself has been checked; migration data is refused with Errno.EINVAL because the device is never in a
// migration state.
import {
  DEVICE_FEATURE_HEAD,
  type DeviceFeature,
  type DmaLoggingStart,
  decodeDeviceFeature,
  decodeDmaLoggingReport,
  decodeDmaLoggingStart,
  decodeMigDataRead,
  decodeMigDataWrite,
  Errno,
  encodeDeviceFeature,
  encodeDmaLoggingReport,
  encodeDmaLoggingStart,
  Feature,
  FeatureFlag,
  featureIndex,
  U64_MAX,
} from "../../../protocol/index.ts";
import { DirtyLog } from "../../iommu/dirty.ts";
import type { ReceivedFrame } from "../../transport/connection.ts";
import { VfuError } from "../../util/errors.ts";
import type { HandlerResult } from "../dispatch.ts";
import { Limits } from "../limits.ts";
import type { Session } from "../session.ts";

const REPORT_HEAD = 24;

/** The operations each supported feature allows. */
const OPS: Readonly<Record<number, number>> = {
  [Feature.DMA_LOGGING_START]: FeatureFlag.SET,
  [Feature.DMA_LOGGING_STOP]: FeatureFlag.SET,
  [Feature.DMA_LOGGING_REPORT]: FeatureFlag.GET,
};

function reply(flags: number, data: Uint8Array, argsz = DEVICE_FEATURE_HEAD + data.length): HandlerResult {
  return { body: encodeDeviceFeature({ argsz, flags, data }) };
}

export function handleDeviceFeature(s: Session, frame: ReceivedFrame): HandlerResult {
  const req = decodeDeviceFeature(frame.body);
  const index = featureIndex(req.flags);
  const allowed = OPS[index];
  if (allowed === undefined) throw new VfuError(Errno.ENOTTY, `device feature ${index} is not supported`);
  const ops = req.flags & (FeatureFlag.GET | FeatureFlag.SET);
  if (ops & ~allowed) {
    throw new VfuError(
      Errno.EINVAL,
      `device feature ${index} does not support flags 0x${req.flags.toString(16)}`,
    );
  }
  if (req.flags & FeatureFlag.PROBE) return reply(req.flags, req.data);
  if (ops === 0) throw new VfuError(Errno.EINVAL, `device feature ${index}: neither GET, SET nor PROBE`);
  switch (index) {
    case Feature.DMA_LOGGING_START:
      return loggingStart(s, req);
    case Feature.DMA_LOGGING_STOP:
      if (req.data.length !== 0) throw new VfuError(Errno.EINVAL, "DMA_LOGGING_STOP carries no data");
      s.space.dirty.stop();
      return reply(req.flags, req.data);
    default:
      return loggingReport(s, req);
  }
}

function loggingStart(s: Session, req: DeviceFeature): HandlerResult {
  const start: DmaLoggingStart = decodeDmaLoggingStart(req.data);
  const chosen = s.space.dirty.start(start.pageSize, start.ranges);
  s.log.debug(`dirty logging started: page size ${chosen}, ${start.ranges.length || "all"} ranges`);
  return reply(req.flags, encodeDmaLoggingStart({ pageSize: chosen, ranges: start.ranges }));
}

function loggingReport(s: Session, req: DeviceFeature): HandlerResult {
  const r = decodeDmaLoggingReport(req.data);
  if (r.bitmap) throw new VfuError(Errno.EINVAL, "a DMA_LOGGING_REPORT request carries no bitmap");
  const dirty = s.space.dirty;
  if (!dirty.logging) throw new VfuError(Errno.EINVAL, "dirty logging is not on");
  if (r.pageSize <= 0n || (r.pageSize & (r.pageSize - 1n)) !== 0n) {
    throw new VfuError(Errno.EINVAL, `report page size ${r.pageSize} is not a power of two`);
  }
  if (r.length === 0n || r.iova > U64_MAX - (r.length - 1n)) {
    throw new VfuError(
      Errno.EINVAL,
      `report range 0x${r.iova.toString(16)}+0x${r.length.toString(16)} is empty or wraps`,
    );
  }
  const maxBytes = Math.min(s.clientCaps?.maxDataXferSize ?? Limits.maxDataXferSize, 64 * 1024 * 1024);
  const bytes = DirtyLog.bitmapBytes(r.length, r.pageSize);
  if (bytes > BigInt(maxBytes)) {
    throw new VfuError(
      Errno.E2BIG,
      `a ${bytes}-byte dirty bitmap exceeds the client's ${maxBytes}-byte transfers`,
    );
  }
  const needed = DEVICE_FEATURE_HEAD + REPORT_HEAD + Number(bytes);
  const head = { iova: r.iova, length: r.length, pageSize: r.pageSize };
  if (req.argsz < needed) return reply(req.flags, encodeDmaLoggingReport(head), needed);
  const bitmap = dirty.report(r.iova, r.length, r.pageSize, maxBytes);
  return reply(req.flags, encodeDmaLoggingReport({ ...head, bitmap }));
}

export function handleMigDataRead(_s: Session, frame: ReceivedFrame): HandlerResult {
  decodeMigDataRead(frame.body);
  throw new VfuError(Errno.EINVAL, "the device is not in a migration state that produces data");
}

export function handleMigDataWrite(_s: Session, frame: ReceivedFrame): HandlerResult {
  decodeMigDataWrite(frame.body);
  throw new VfuError(Errno.EINVAL, "the device is not in the RESUMING migration state");
}
