// DEVICE_GET_IRQ_INFO and DEVICE_SET_IRQS. The codec checks the message's shape; the device's
// IrqController checks it against the declared indices and applies the whole matrix.
import { decodeIrqInfo, decodeSetIrqs, Errno, encodeIrqInfo } from "../../../protocol/index.ts";
import type { ReceivedFrame } from "../../transport/connection.ts";
import { VfuError } from "../../util/errors.ts";
import type { HandlerResult } from "../dispatch.ts";
import { Limits } from "../limits.ts";
import type { Session } from "../session.ts";

const IRQ_INFO_SIZE = 16;

export function handleGetIrqInfo(s: Session, frame: ReceivedFrame): HandlerResult {
  const req = decodeIrqInfo(frame.body);
  if (req.argsz < IRQ_INFO_SIZE) {
    throw new VfuError(
      Errno.EINVAL,
      `DEVICE_GET_IRQ_INFO argsz ${req.argsz} is smaller than the ${IRQ_INFO_SIZE}-byte reply`,
    );
  }
  if (req.index >= s.device.irqs.numIrqs) {
    throw new VfuError(
      Errno.EINVAL,
      `interrupt index ${req.index} does not exist (the device has ${s.device.irqs.numIrqs})`,
    );
  }
  const info = s.device.irqs.info(req.index);
  return {
    body: encodeIrqInfo({ argsz: IRQ_INFO_SIZE, flags: info.flags, index: req.index, count: info.count }),
  };
}

export function handleSetIrqs(s: Session, frame: ReceivedFrame): HandlerResult | Promise<HandlerResult> {
  const req = decodeSetIrqs(frame.body);
  if (frame.fds.length > Limits.maxMsgFds) throw new VfuError(Errno.EINVAL, "more fds than max_msg_fds");
  // Changing the interrupt set-up is a write-combining flush point: the writes before it reach
  // the device before its interrupts are rewired (or triggered, with DATA_BOOL/NONE).
  const flushed = s.device.flushWrites("irq");
  if (flushed) {
    return flushed.then(() => {
      s.device.irqs.setIrqs(req, frame.fds.splice(0));
      return undefined;
    });
  }
  // OWNERSHIP: the fds move into the interrupt controller (closed there on failure).
  s.device.irqs.setIrqs(req, frame.fds.splice(0));
  return undefined;
}
