// DEVICE_FEATURE, MIG_DATA_READ and MIG_DATA_WRITE. No device offers migration or DMA logging
// through these yet, so every feature is answered ENOTTY ("not supported", as the kernel does),
// after the message itself has been checked; migration data is refused with EINVAL because the
// device is never in a migration state.
import {
  decodeDeviceFeature,
  decodeMigDataRead,
  decodeMigDataWrite,
  featureIndex,
} from "../../../protocol/index.ts";
import type { ReceivedFrame } from "../../transport/connection.ts";
import { VfuError } from "../../util/errors.ts";
import type { HandlerResult } from "../dispatch.ts";
import type { Session } from "../session.ts";

const EINVAL = 22;
const ENOTTY = 25;

export function handleDeviceFeature(_s: Session, frame: ReceivedFrame): HandlerResult {
  const req = decodeDeviceFeature(frame.body);
  throw new VfuError(ENOTTY, `device feature ${featureIndex(req.flags)} is not supported`);
}

export function handleMigDataRead(_s: Session, frame: ReceivedFrame): HandlerResult {
  decodeMigDataRead(frame.body);
  throw new VfuError(EINVAL, "the device is not in a migration state that produces data");
}

export function handleMigDataWrite(_s: Session, frame: ReceivedFrame): HandlerResult {
  decodeMigDataWrite(frame.body);
  throw new VfuError(EINVAL, "the device is not in the RESUMING migration state");
}
