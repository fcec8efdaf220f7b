// The type-0 configuration header (bytes 0x00-0x3F) of a PCI function: identification, the Command
// and Status registers, the six BARs (bar.ts), the expansion ROM BAR, the capability pointer and the
// interrupt pin. `defineHeader` declares every header register in a ConfigSpace with its power-on
// value and its write/RW1C masks, so client accesses need no code:
// - Command: I/O Space only when the function has an I/O BAR, Memory Space only with a memory BAR
//   or a ROM, Bus Master, Parity Error Response, SERR# Enable and Interrupt Disable are writable;
//   the legacy bits (special cycles, MWI, VGA snoop, stepping, fast back-to-back) are read-only 0.
// - Status: the five error bits are RW1C; Interrupt Status (set by the function from its INTx
//   level, see interrupts.ts) and Capabilities List are read-only.
// - Interrupt Line is RW scratch for the driver; Interrupt Pin is 1 (INTA#) or 0 (no INTx).
// - Latency Timer is RW on conventional PCI and read-only 0 on PCI Express; BIST, Cardbus CIS,
//   Min_Gnt and Max_Lat are read-only 0; the header type is 0 (single function).
import { PciCommand, PciHeader, PciStatus } from "../../protocol/index.ts";
import type { ConfigSpace } from "./config-space.ts";

export { PciCommand, PciHeader, PciStatus };

/** The Status bits software clears by writing 1. */
export const STATUS_RW1C =
  PciStatus.PARITY |
  PciStatus.SIG_TARGET_ABORT |
  PciStatus.REC_TARGET_ABORT |
  PciStatus.REC_MASTER_ABORT |
  PciStatus.SIG_SYSTEM_ERROR |
  PciStatus.DETECTED_PARITY;

/** The identification of a function (header bytes the driver matches on). */
export interface PciIds {
  vendor: number;
  device: number;
  subsystemVendor?: number;
  subsystem?: number;
  /** 24-bit class code: base class << 16 | sub-class << 8 | programming interface. */
  classCode: number;
  revision?: number;
}

export interface HeaderLayout {
  ids: PciIds;
  express: boolean;
  hasIoBar: boolean;
  hasMemoryBar: boolean;
  /** Interrupt Pin: 0 (none) or 1 (INTA#). */
  interruptPin: number;
  /** Offset of the first capability, 0 for none. */
  capabilities: number;
}

export function checkIds(ids: PciIds): void {
  const u16 = (name: string, v: number | undefined) => {
    if (v !== undefined && !(Number.isInteger(v) && v >= 0 && v <= 0xffff))
      throw new Error(`ids.${name} ${v} is not a 16-bit value`);
  };
  u16("vendor", ids.vendor);
  u16("device", ids.device);
  u16("subsystemVendor", ids.subsystemVendor);
  u16("subsystem", ids.subsystem);
  if (ids.vendor === 0xffff || ids.vendor === 0) {
    throw new Error(`ids.vendor 0x${ids.vendor.toString(16)} is reserved (it means "no device")`);
  }
  if (!(Number.isInteger(ids.classCode) && ids.classCode >= 0 && ids.classCode <= 0xffffff))
    throw new Error(`ids.classCode ${ids.classCode} is not a 24-bit class code`);
  const rev = ids.revision ?? 0;
  if (!(Number.isInteger(rev) && rev >= 0 && rev <= 0xff))
    throw new Error(`ids.revision ${rev} is not a byte`);
}

/** Declare the header registers except the BARs (bar.ts declares those). */
export function defineHeader(cs: ConfigSpace, h: HeaderLayout): void {
  const H = PciHeader;
  const C = PciCommand;
  cs.define(H.VENDOR_ID, 2, { value: h.ids.vendor });
  cs.define(H.DEVICE_ID, 2, { value: h.ids.device });
  let command = C.MASTER | C.PARITY | C.SERR | C.INTX_DISABLE;
  if (h.hasIoBar) command |= C.IO;
  if (h.hasMemoryBar) command |= C.MEMORY;
  cs.define(H.COMMAND, 2, { value: 0, writable: command });
  let status = 0;
  if (h.capabilities) status |= PciStatus.CAP_LIST;
  if (!h.express) status |= PciStatus.DEVSEL_MEDIUM;
  cs.define(H.STATUS, 2, { value: status, rw1c: STATUS_RW1C });
  cs.define(H.REVISION_ID, 1, { value: h.ids.revision ?? 0 });
  cs.define(H.CLASS_PROG, 1, { value: h.ids.classCode & 0xff });
  cs.define(H.CLASS_SUB, 1, { value: (h.ids.classCode >> 8) & 0xff });
  cs.define(H.CLASS_BASE, 1, { value: (h.ids.classCode >> 16) & 0xff });
  cs.define(H.CACHE_LINE_SIZE, 1, { value: 0, writable: 0xff });
  cs.define(H.LATENCY_TIMER, 1, { value: 0, writable: h.express ? 0 : 0xff });
  cs.define(H.HEADER_TYPE, 1, { value: 0 });
  cs.define(H.SUBSYSTEM_VENDOR_ID, 2, { value: h.ids.subsystemVendor ?? 0 });
  cs.define(H.SUBSYSTEM_ID, 2, { value: h.ids.subsystem ?? 0 });
  cs.define(H.CAPABILITIES, 1, { value: h.capabilities });
  cs.define(H.INTERRUPT_LINE, 1, { value: 0, writable: 0xff });
  cs.define(H.INTERRUPT_PIN, 1, { value: h.interruptPin });
}
