// Interrupts as the client sees them: SET_IRQS binds eventfds to the vectors of an interrupt index,
// and the device signals a vector by writing its eventfd. Waiting polls the eventfd on Node's loop
// (the addon's Poller); reading it clears its counter. The eventfds `enableInterrupts` creates are
// the client's (closed when it closes).

import { native, PollEvent } from "../../native/index.ts";
import { Command, encodeSetIrqs, IrqSetFlag } from "../../protocol/index.ts";
import type { ClientCore } from "./client-core.ts";

export interface SetIrqsRequest {
  index: number;
  flags: number;
  start: number;
  count: number;
  data?: Uint8Array | null;
  fds?: readonly number[];
}

export async function setIrqs(core: ClientCore, req: SetIrqsRequest): Promise<void> {
  const dataLength = req.data ? req.data.length : 0;
  const body = encodeSetIrqs({
    argsz: 20 + dataLength,
    flags: req.flags,
    index: req.index,
    start: req.start,
    count: req.count,
    data: req.data ?? null,
  });
  await core.request(Command.DEVICE_SET_IRQS, body, req.fds ?? []);
}

/** Create `count` eventfds (the client's) and bind them to vectors `start..` of `index`, in as many
 * SET_IRQS as the server's max_msg_fds needs (as QEMU splits them). */
export async function enableInterrupts(
  core: ClientCore,
  index: number,
  start: number,
  count: number,
): Promise<number[]> {
  const fds: number[] = [];
  for (let i = 0; i < count; i++) fds.push(core.eventfd());
  const chunk = Math.max(1, core.serverCaps.maxMsgFds);
  try {
    for (let at = 0; at < count; at += chunk) {
      const n = Math.min(chunk, count - at);
      await setIrqs(core, {
        index,
        flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER,
        start: start + at,
        count: n,
        fds: fds.slice(at, at + n),
      });
    }
  } catch (err) {
    for (const fd of fds) core.release(fd);
    throw err;
  }
  return fds;
}

/** Resolve with the eventfd's counter once it is signalled; reject after `timeoutMs`. */
export function waitForInterrupt(fd: number, timeoutMs = 2000): Promise<number> {
  const now = native.eventfdRead(fd);
  if (now !== null) return Promise.resolve(now);
  return new Promise((resolve, reject) => {
    const poller = new native.Poller(fd, () => {
      const v = native.eventfdRead(fd);
      if (v === null) return;
      clearTimeout(timer);
      poller.close();
      resolve(v);
    });
    const timer = setTimeout(() => {
      poller.close();
      reject(new Error(`no interrupt on eventfd ${fd} within ${timeoutMs} ms`));
    }, timeoutMs);
    poller.start(PollEvent.READABLE);
  });
}

/** Read and clear an eventfd's counter without waiting (0 when it was not signalled). */
export function interruptCount(fd: number): number {
  return native.eventfdRead(fd) ?? 0;
}
