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

export async function handleRegionWriteMulti(s: Session, frame: ReceivedFrame): Promise<HandlerResult> {
  if (!s.options.writeMultiple) throw new VfuError(EINVAL, "REGION_WRITE_MULTI was not offered in VERSION");
  const entries = decodeRegionWriteMulti(frame.body);
  let done = 0;
  for (const e of entries) {
    // Entries apply in order; the first failure stops the batch and is the reply's errno.
    const r = s.device.write(e.region, e.offset, e.data);
    if (r instanceof Promise) await r;
    done++;
  }
  return { body: encodeRegionWriteMultiReply({ wrCnt: BigInt(done) }) };
}
