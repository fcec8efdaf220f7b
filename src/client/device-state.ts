// The device as a whole: DEVICE_RESET, DEVICE_FEATURE (dirty-page logging, migration state) and
// the migration data stream (MIG_DATA_READ/MIG_DATA_WRITE).

import {
  Command,
  decodeDeviceFeature,
  decodeMigDataReadReply,
  encodeDeviceFeature,
  encodeMigDataRead,
  encodeMigDataWrite,
} from "../../protocol/index.ts";
import type { ClientCore } from "./client-core.ts";

export async function reset(core: ClientCore): Promise<void> {
  await core.request(Command.DEVICE_RESET, null);
}

export async function deviceFeature(
  core: ClientCore,
  flags: number,
  data: Uint8Array = new Uint8Array(0),
  argsz = 8 + data.length,
) {
  const r = await core.request(Command.DEVICE_FEATURE, encodeDeviceFeature({ argsz, flags, data }));
  return decodeDeviceFeature(r.body);
}

export async function migDataRead(core: ClientCore, size: number): Promise<Uint8Array> {
  const r = await core.request(Command.MIG_DATA_READ, encodeMigDataRead({ argsz: 8 + size, size }));
  return decodeMigDataReadReply(r.body).data ?? new Uint8Array(0);
}

export async function migDataWrite(core: ClientCore, data: Uint8Array): Promise<void> {
  await core.request(
    Command.MIG_DATA_WRITE,
    encodeMigDataWrite({ argsz: 8 + data.length, size: data.length, data }),
  );
}
