// REGION_READ, REGION_WRITE and REGION_WRITE_MULTI: the client touching device registers.
// The device (src/device) enforces region bounds, direction and declared access widths; here we
// enforce the transfer limit and shape the replies. A read reply is built in one allocation.
import {
  decodeRegionRead,
  decodeRegionWrite,
  decodeRegionWriteMulti,
  encodeRegionReadReplyMessage,
  encodeRegionWriteMultiReply,
  encodeRegionWriteReplyMessage,
} from "../../../protocol/index.ts";
import type { ReceivedFrame } from "../../transport/connection.ts";
import { VfuError } from "../../util/errors.ts";
import type { HandlerResult } from "../dispatch.ts";
import { Limits } from "../limits.ts";
import type { Session } from "../session.ts";

const EINVAL = 22;

function checkCount(count: number, what: string): void {
  if (count > Limits.maxDataXferSize) {
    throw new VfuError(EINVAL, `${what} count ${count} is over max_data_xfer_size ${Limits.maxDataXferSize}`);
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
  const req = decodeRegionWrite(frame.body);
  checkCount(req.count, "REGION_WRITE");
  if (req.count === 0) return undefined;
  const done = s.device.write(req.region, req.offset, req.data!);
  const msgId = frame.header.msgId;
  const reply = (): HandlerResult =>
    encodeRegionWriteReplyMessage(msgId, { offset: req.offset, region: req.region, count: req.count });
  if (done instanceof Promise) return done.then(reply);
  return reply();
}

/** Entries apply in order, each through the device exactly as a REGION_WRITE would (so WC
 * entries feed the write-combining buffer and a UC entry finds the WC entries before it applied).
 * The first entry that fails stops the message: its errno is the reply (entries before it stay
 * applied); a NO_REPLY message is never answered, the session sees to that. */
export function handleRegionWriteMulti(
  s: Session,
  frame: ReceivedFrame,
): HandlerResult | Promise<HandlerResult> {
  if (!s.options.writeMultiple) throw new VfuError(EINVAL, "REGION_WRITE_MULTI was not offered in VERSION");
  const entries = decodeRegionWriteMulti(frame.body);
  const device = s.device;
  const reply = (): HandlerResult => ({
    body: encodeRegionWriteMultiReply({ wrCnt: BigInt(entries.length) }),
  });
  // Synchronous while every entry is; the rest waits for the first asynchronous one.
  const from = async (i: number, pending: Promise<void>): Promise<HandlerResult> => {
    await pending;
    for (let j = i; j < entries.length; j++) {
      const e = entries[j]!;
      await device.write(e.region, e.offset, e.data);
    }
    return reply();
  };
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    const r = device.write(e.region, e.offset, e.data);
    if (r instanceof Promise) return from(i + 1, r);
  }
  return reply();
}
