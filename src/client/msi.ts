// MSI and MSI-X enabled the way a driver enables them, with each vector bound to an eventfd of the
// client's (SET_IRQS on index MSI or MSIX):
// - MSI: the message address and data written, Multiple Message Enable set to the vectors asked
//   (a power of two up to Multiple Message Capable), the allocated vectors unmasked when the
//   capability has per-vector masking, then MSI Enable.
// - MSI-X: MSI-X Enable with the Function Mask set, each entry of the table (in the BAR the Table
//   BIR names) given an address, its vector number as data and its Mask bit cleared, then the
//   Function Mask cleared.
// The message address is the x86 local APIC's, 0xFEE00000, as a guest would program it; delivery
// is the eventfd either way. `disable()` clears the enable bit, unbinds the eventfds and closes them.

import {
  Errno,
  IrqSetFlag,
  MsiCap,
  MsiControl,
  MsixCap,
  MsixControl,
  MsixEntry,
  PciIrq,
} from "../../protocol/index.ts";
import { VfuError } from "../util/errors.ts";
import type { ClientCore } from "./client-core.ts";
import { enableInterrupts, interruptCount, setIrqs, waitForInterrupt } from "./interrupts.ts";
import { configRead, configWrite, listCapabilities } from "./pci-config.ts";
import { regionWrite32 } from "./region-access.ts";

const MSI_ADDRESS = 0xfee0_0000;

/** Vectors of MSI or MSI-X, each bound to an eventfd. */
export interface MsiVectors {
  readonly kind: "msi" | "msix";
  /** Config-space offset of the capability. */
  readonly capability: number;
  /** One eventfd per vector, the client's. */
  readonly fds: readonly number[];
  /** Resolve with the vector's eventfd counter once it fires; reject after `timeoutMs`. */
  wait(vector: number, timeoutMs?: number): Promise<number>;
  /** Read and clear the vector's counter (0 when it has not fired). */
  count(vector: number): number;
  /** Clear the enable bit and unbind and close the eventfds. */
  disable(): Promise<void>;
}

async function findCap(core: ClientCore, id: number, name: string): Promise<number> {
  const cap = (await listCapabilities(core)).find((c) => !c.extended && c.id === id);
  if (!cap) throw new VfuError(Errno.ENODEV, `the config space has no ${name} capability`);
  return cap.offset;
}

function vectors(
  core: ClientCore,
  kind: "msi" | "msix",
  capability: number,
  fds: number[],
  off: () => Promise<void>,
): MsiVectors {
  const fdOf = (v: number): number => {
    const fd = fds[v];
    if (fd === undefined) throw new RangeError(`${kind} vector ${v} is not enabled (${fds.length} are)`);
    return fd;
  };
  return {
    kind,
    capability,
    fds,
    wait: (v, timeoutMs) => waitForInterrupt(fdOf(v), timeoutMs),
    count: (v) => interruptCount(fdOf(v)),
    async disable() {
      await off();
      // TRIGGER|NONE with count 0 unbinds every vector of the index.
      await setIrqs(core, {
        index: kind === "msi" ? PciIrq.MSI : PciIrq.MSIX,
        flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER,
        start: 0,
        count: 0,
      });
      for (const fd of fds) core.release(fd);
    },
  };
}

export async function enableMsi(
  core: ClientCore,
  opts: { vectors?: number; data?: number } = {},
): Promise<MsiVectors> {
  const cap = await findCap(core, MsiCap.ID, "MSI");
  const control = await configRead(core, cap + MsiCap.CONTROL, 2);
  const capable = 1 << ((control & MsiControl.MMC_MASK) >> 1);
  const n = opts.vectors ?? capable;
  if (!(Number.isInteger(n) && n >= 1 && n <= capable && (n & (n - 1)) === 0))
    throw new RangeError(`MSI vectors ${n}: a power of two from 1 to ${capable} (Multiple Message Capable)`);
  const is64 = (control & MsiControl.ADDR64) !== 0;
  const fds = await enableInterrupts(core, PciIrq.MSI, 0, n);
  try {
    await configWrite(core, cap + MsiCap.ADDRESS_LO, 4, MSI_ADDRESS);
    if (is64) await configWrite(core, cap + MsiCap.ADDRESS_HI, 4, 0);
    await configWrite(core, cap + (is64 ? MsiCap.DATA_64 : MsiCap.DATA_32), 2, opts.data ?? 0);
    if (control & MsiControl.PER_VECTOR_MASK) {
      const maskAt = cap + (is64 ? MsiCap.MASK_64 : MsiCap.MASK_32);
      const allocated = n === 32 ? 0xffff_ffff : (1 << n) - 1;
      const mask = await configRead(core, maskAt, 4);
      await configWrite(core, maskAt, 4, (mask & ~allocated) >>> 0);
    }
    const mme = Math.log2(n) << 4;
    await configWrite(
      core,
      cap + MsiCap.CONTROL,
      2,
      (control & ~MsiControl.MME_MASK) | mme | MsiControl.ENABLE,
    );
  } catch (err) {
    for (const fd of fds) core.release(fd);
    throw err;
  }
  return vectors(core, "msi", cap, fds, async () => {
    const now = await configRead(core, cap + MsiCap.CONTROL, 2);
    await configWrite(core, cap + MsiCap.CONTROL, 2, now & ~MsiControl.ENABLE);
  });
}

export async function enableMsix(core: ClientCore, opts: { vectors?: number } = {}): Promise<MsiVectors> {
  const cap = await findCap(core, MsixCap.ID, "MSI-X");
  const control = await configRead(core, cap + MsixCap.CONTROL, 2);
  const tableSize = (control & MsixControl.TABLE_SIZE_MASK) + 1;
  const n = opts.vectors ?? tableSize;
  if (!(Number.isInteger(n) && n >= 1 && n <= tableSize))
    throw new RangeError(`MSI-X vectors ${n}: from 1 to the table size, ${tableSize}`);
  const table = await configRead(core, cap + MsixCap.TABLE, 4);
  const bar = table & 0x7;
  const tableOffset = (table & ~0x7) >>> 0;
  const fds = await enableInterrupts(core, PciIrq.MSIX, 0, n);
  try {
    const ctl = cap + MsixCap.CONTROL;
    await configWrite(core, ctl, 2, control | MsixControl.ENABLE | MsixControl.FUNCTION_MASK);
    // The entries are independent: send them all, then wait for every reply.
    const writes: Promise<void>[] = [];
    for (let v = 0; v < n; v++) {
      const entry = tableOffset + v * MsixEntry.SIZE;
      writes.push(
        regionWrite32(core, bar, entry + MsixEntry.ADDRESS_LO, MSI_ADDRESS),
        regionWrite32(core, bar, entry + MsixEntry.ADDRESS_HI, 0),
        regionWrite32(core, bar, entry + MsixEntry.DATA, v),
        regionWrite32(core, bar, entry + MsixEntry.VECTOR_CONTROL, 0),
      );
    }
    await Promise.all(writes);
    await configWrite(core, ctl, 2, (control | MsixControl.ENABLE) & ~MsixControl.FUNCTION_MASK);
  } catch (err) {
    for (const fd of fds) core.release(fd);
    throw err;
  }
  return vectors(core, "msix", cap, fds, async () => {
    const now = await configRead(core, cap + MsixCap.CONTROL, 2);
    await configWrite(core, cap + MsixCap.CONTROL, 2, now & ~MsixControl.ENABLE);
  });
}
