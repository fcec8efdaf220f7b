// VERSION: the first message of every connection. We answer 0.0 (what QEMU requires) with our
// limits as compact JSON, never with fds and never with twin_socket (QEMU supports neither).
import {
  decodeVersion,
  Errno,
  encodeVersion,
  formatCapabilities,
  parseCapabilities,
} from "../../../protocol/index.ts";
import type { ReceivedFrame } from "../../transport/connection.ts";
import { VfuError } from "../../util/errors.ts";
import type { HandlerResult } from "../dispatch.ts";
import { Limits } from "../limits.ts";
import type { Session } from "../session.ts";

export function handleVersion(s: Session, frame: ReceivedFrame): HandlerResult {
  if (s.negotiated) throw new VfuError(Errno.EINVAL, "VERSION was already negotiated on this connection");
  const v = decodeVersion(frame.body);
  if (v.major !== 0)
    throw new VfuError(Errno.EINVAL, `protocol major version ${v.major} is not supported (we speak 0)`);
  const caps = parseCapabilities(v.json);
  if (caps.maxMsgFds > Limits.maxClientMsgFds) {
    throw new VfuError(Errno.EINVAL, `max_msg_fds ${caps.maxMsgFds} is over ${Limits.maxClientMsgFds}`);
  }
  if (caps.maxDataXferSize < 1) throw new VfuError(Errno.EINVAL, "max_data_xfer_size must be at least 1");
  s.clientCaps = caps;
  const json = formatCapabilities({
    maxMsgFds: Limits.maxMsgFds,
    maxDataXferSize: Limits.maxDataXferSize,
    pgsizes: Limits.pgsizes,
    maxDmaMaps: Limits.maxDmaMaps,
    ...(s.options.writeMultiple ? { writeMultiple: true } : {}),
  });
  return { body: encodeVersion({ major: 0, minor: 0, json }) };
}
