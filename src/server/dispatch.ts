// The command table: which handler answers which command and whether the command may carry fds.
// Commands the client must never send (DMA_READ/DMA_WRITE go server-to-client) are absent, so
// they are answered like unknown commands (ENOSYS).
import { Command } from "../../protocol/index.ts";
import type { ReceivedFrame } from "../transport/connection.ts";
import {
  handleDeviceGetInfo,
  handleDeviceReset,
  handleRegionInfo,
  handleRegionIoFds,
} from "./handlers/device.ts";
import { handleDmaMap, handleDmaUnmap } from "./handlers/dma.ts";
import { handleDeviceFeature, handleMigDataRead, handleMigDataWrite } from "./handlers/feature.ts";
import { handleGetIrqInfo, handleSetIrqs } from "./handlers/irq.ts";
import { handleRegionRead, handleRegionWrite, handleRegionWriteMulti } from "./handlers/region-access.ts";
import { handleVersion } from "./handlers/version.ts";
import type { Session } from "./session.ts";

/** A whole reply message (hot paths build it in one allocation), or a body with fds to attach
 * (OWNERSHIP: reply fds stay the handler's), or nothing for a header-only reply. */
export type HandlerResult = Uint8Array | { body?: Uint8Array | null; fds?: readonly number[] } | undefined;

export interface Handler {
  /** The handler takes ownership of the fds it keeps by removing them from `frame.fds`; the
   * session closes whatever is left there. */
  takesFds: boolean;
  handle(session: Session, frame: ReceivedFrame): HandlerResult | Promise<HandlerResult>;
}

const table = new Map<number, Handler>([
  [Command.VERSION, { takesFds: false, handle: handleVersion }],
  [Command.DMA_MAP, { takesFds: true, handle: handleDmaMap }],
  [Command.DMA_UNMAP, { takesFds: false, handle: handleDmaUnmap }],
  [Command.DEVICE_GET_INFO, { takesFds: false, handle: handleDeviceGetInfo }],
  [Command.DEVICE_GET_REGION_INFO, { takesFds: false, handle: handleRegionInfo }],
  [Command.DEVICE_GET_REGION_IO_FDS, { takesFds: false, handle: handleRegionIoFds }],
  [Command.DEVICE_GET_IRQ_INFO, { takesFds: false, handle: handleGetIrqInfo }],
  [Command.DEVICE_SET_IRQS, { takesFds: true, handle: handleSetIrqs }],
  [Command.REGION_READ, { takesFds: false, handle: handleRegionRead }],
  [Command.REGION_WRITE, { takesFds: false, handle: handleRegionWrite }],
  [Command.DEVICE_RESET, { takesFds: false, handle: handleDeviceReset }],
  [Command.REGION_WRITE_MULTI, { takesFds: false, handle: handleRegionWriteMulti }],
  [Command.DEVICE_FEATURE, { takesFds: false, handle: handleDeviceFeature }],
  [Command.MIG_DATA_READ, { takesFds: false, handle: handleMigDataRead }],
  [Command.MIG_DATA_WRITE, { takesFds: false, handle: handleMigDataWrite }],
]);

export function handlerFor(command: number): Handler | undefined {
  return table.get(command);
}
