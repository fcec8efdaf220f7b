// REGION_READ, REGION_WRITE and REGION_WRITE_MULTI: the client touching device registers.
// The device (src/device) enforces region bounds, direction and declared access widths; here we
// enforce the transfer limit and shape the replies. A read reply is built in one allocation.
//
// The write paths are hot (QEMU posts a message per guest store, or 200 stores per
// REGION_WRITE_MULTI): a posted write builds no reply, and with a device that has `writeFrom` the
// stores are read in place from the message body, so a store the write-combining buffer takes
// costs no object, view or bigint. The checks, errors and order are those of the decoders and of
// `device.write`; only the allocations differ.
import { readU32 } from "../../../protocol/bytes.ts";
import {
  checkRegionWriteMulti,
  decodeRegionRead,
  decodeRegionWrite,
  Errno,
  encodeRegionReadReplyMessage,
  encodeRegionWriteMultiReply,
  encodeRegionWriteReplyMessage,
  REGION_ACCESS_SIZE,
  WRITE_MULTI_ENTRY_SIZE,
  wantsReply,
  writeMultiCount,
  writeMultiDataAt,
  writeMultiEntryAt,
  writeMultiOffset,
  writeMultiOffsetNumber,
  writeMultiRegion,
} from "../../../protocol/index.ts";
import type { DeviceModel } from "../../device/device.ts";
import type { ReceivedFrame } from "../../transport/connection.ts";
import { VfuError } from "../../util/errors.ts";
import type { HandlerResult } from "../dispatch.ts";
import { Limits } from "../limits.ts";
import type { Session } from "../session.ts";

function checkCount(count: number, what: string): void {
  if (count > Limits.maxDataXferSize) {
    throw new VfuError(
      Errno.EINVAL,
      `${what} count ${count} is over max_data_xfer_size ${Limits.maxDataXferSize}`,
    );
  }
}

export function handleRegionRead(s: Session, frame: ReceivedFrame): HandlerResult | Promise<HandlerResult> {
  const req = decodeRegionRead(frame.body);
  checkCount(req.count, "REGION_READ");
  if (req.count === 0) return undefined;
  const msgId = frame.header.msgId;
  const data = s.device.read(req.region, req.offset, req.count);
  if (data instanceof Promise) {
    return data.then((d) =>
      encodeRegionReadReplyMessage(msgId, {
        offset: req.offset,
        region: req.region,
        count: req.count,
        data: d,
      }),
    );
  }
  return encodeRegionReadReplyMessage(msgId, {
    offset: req.offset,
    region: req.region,
    count: req.count,
    data,
  });
}

export function handleRegionWrite(s: Session, frame: ReceivedFrame): HandlerResult | Promise<HandlerResult> {
  const body = frame.body;
  const device = s.device;
  // In place when the body is well formed (what decodeRegionWrite would accept) and the offset is
  // below 2^32; anything else takes the decoder, which throws the errors.
  if (
    device.writeFrom !== undefined &&
    body.length >= REGION_ACCESS_SIZE &&
    body.length === REGION_ACCESS_SIZE + readU32(body, 12) &&
    readU32(body, 4) === 0
  ) {
    const count = body.length - REGION_ACCESS_SIZE;
    checkCount(count, "REGION_WRITE");
    if (count === 0) return undefined;
    const done = device.writeFrom(readU32(body, 8), readU32(body, 0), body, REGION_ACCESS_SIZE, count);
    if (!wantsReply(frame.header.flags)) return done instanceof Promise ? done.then(nothing) : undefined;
    if (done instanceof Promise) return done.then(() => writeReply(frame));
    return writeReply(frame);
  }
  const req = decodeRegionWrite(body);
  checkCount(req.count, "REGION_WRITE");
  if (req.count === 0) return undefined;
  const done = device.write(req.region, req.offset, req.data!);
  if (done instanceof Promise) return done.then(() => writeReply(frame));
  return writeReply(frame);
}

const nothing = (): HandlerResult => undefined;

/** The REGION_WRITE reply (the head echoed); none is built for a posted write. */
function writeReply(frame: ReceivedFrame): HandlerResult {
  if (!wantsReply(frame.header.flags)) return undefined;
  const req = decodeRegionWrite(frame.body);
  return encodeRegionWriteReplyMessage(frame.header.msgId, {
    offset: req.offset,
    region: req.region,
    count: req.count,
  });
}

/** Entries apply in order, each through the device exactly as a REGION_WRITE would (so WC
 * entries feed the write-combining buffer and a UC entry finds the WC entries before it applied).
 * The whole body is checked before the first entry applies. The first entry that fails stops the
 * message: its errno is the reply (entries before it stay applied); a NO_REPLY message is never
 * answered, the session sees to that. */
export function handleRegionWriteMulti(
  s: Session,
  frame: ReceivedFrame,
): HandlerResult | Promise<HandlerResult> {
  if (!s.options.writeMultiple)
    throw new VfuError(Errno.EINVAL, "REGION_WRITE_MULTI was not offered in VERSION");
  const body = frame.body;
  const n = checkRegionWriteMulti(body);
  const device = s.device;
  // Synchronous while every entry is; the rest waits for the first asynchronous one. Entries that
  // continue each other (one region, one width, each at the end of the one before: a fill) go to
  // the device as one run, resolved and checked once.
  for (let i = 0; i < n; ) {
    const at = writeMultiEntryAt(i);
    const offset = writeMultiOffsetNumber(body, at);
    let r: void | Promise<void>;
    if (offset >= 0 && device.writeRunFrom !== undefined) {
      const index = writeMultiRegion(body, at);
      const width = writeMultiCount(body, at);
      let j = i + 1;
      let next = offset + width;
      for (let a = at + WRITE_MULTI_ENTRY_SIZE; j < n; j++, a += WRITE_MULTI_ENTRY_SIZE, next += width) {
        if (
          writeMultiOffsetNumber(body, a) !== next ||
          writeMultiRegion(body, a) !== index ||
          writeMultiCount(body, a) !== width
        )
          break;
      }
      r = device.writeRunFrom(
        index,
        offset,
        body,
        writeMultiDataAt(at),
        width,
        WRITE_MULTI_ENTRY_SIZE,
        j - i,
      );
      i = j;
    } else {
      r = writeEntry(device, body, at);
      i++;
    }
    if (r instanceof Promise) return writeMultiFrom(device, frame, n, i, r);
  }
  return writeMultiReply(frame, n);
}

function writeEntry(device: DeviceModel, body: Uint8Array, at: number): void | Promise<void> {
  const index = writeMultiRegion(body, at);
  const count = writeMultiCount(body, at);
  const data = writeMultiDataAt(at);
  const offset = writeMultiOffsetNumber(body, at);
  if (offset >= 0 && device.writeFrom !== undefined)
    return device.writeFrom(index, offset, body, data, count);
  return device.write(index, writeMultiOffset(body, at), body.subarray(data, data + count));
}

async function writeMultiFrom(
  device: DeviceModel,
  frame: ReceivedFrame,
  n: number,
  i: number,
  pending: Promise<void>,
): Promise<HandlerResult> {
  await pending;
  for (let j = i; j < n; j++) await writeEntry(device, frame.body, writeMultiEntryAt(j));
  return writeMultiReply(frame, n);
}

function writeMultiReply(frame: ReceivedFrame, n: number): HandlerResult {
  if (!wantsReply(frame.header.flags)) return undefined;
  return { body: encodeRegionWriteMultiReply({ wrCnt: BigInt(n) }) };
}
