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
import type { ConfigSpace } from "./config-space.ts";

/** Type-0 header registers (offset, access, meaning). */
export const PciHeader = {
  VENDOR_ID: 0x00, //          RO   Vendor ID (u16)
  DEVICE_ID: 0x02, //          RO   Device ID (u16)
  COMMAND: 0x04, //            RW   Command (u16, bits in PciCommand)
  STATUS: 0x06, //             RW1C Status (u16, bits in PciStatus; error bits RW1C, rest RO)
  REVISION_ID: 0x08, //        RO   Revision ID (u8)
  CLASS_PROG: 0x09, //         RO   Class code: programming interface (u8)
  CLASS_SUB: 0x0a, //          RO   Class code: sub-class (u8)
  CLASS_BASE: 0x0b, //         RO   Class code: base class (u8)
  CACHE_LINE_SIZE: 0x0c, //    RW   Cache Line Size (u8, no effect)
  LATENCY_TIMER: 0x0d, //      RW   Latency Timer (u8; RO 0 on PCI Express)
  HEADER_TYPE: 0x0e, //        RO   Header Type (u8): 0 = type-0, single function
  BIST: 0x0f, //               RO   BIST (u8): 0 = not supported
  BAR0: 0x10, //               RW   Base Address Register 0 (u32; see bar.ts)
  BAR1: 0x14, //               RW   Base Address Register 1
  BAR2: 0x18, //               RW   Base Address Register 2
  BAR3: 0x1c, //               RW   Base Address Register 3
  BAR4: 0x20, //               RW   Base Address Register 4
  BAR5: 0x24, //               RW   Base Address Register 5
  CARDBUS_CIS: 0x28, //        RO   CardBus CIS pointer (u32): 0
  SUBSYSTEM_VENDOR_ID: 0x2c, // RO   Subsystem Vendor ID (u16)
  SUBSYSTEM_ID: 0x2e, //       RO   Subsystem ID (u16)
  ROM_ADDRESS: 0x30, //        RW   Expansion ROM base address (u32; 0 and read-only without a ROM)
  CAPABILITIES: 0x34, //       RO   Capabilities Pointer (u8): first capability, 0 = none
  INTERRUPT_LINE: 0x3c, //     RW   Interrupt Line (u8): scratch for the driver
  INTERRUPT_PIN: 0x3d, //      RO   Interrupt Pin (u8): 1 = INTA#, 0 = no INTx
  MIN_GNT: 0x3e, //            RO   Min_Gnt (u8): 0
  MAX_LAT: 0x3f, //            RO   Max_Lat (u8): 0
} as const;

/** Bits of the Command register. */
export const PciCommand = {
  IO: 0x0001, //           RW  I/O Space enable (RO 0 without an I/O BAR)
  MEMORY: 0x0002, //       RW  Memory Space enable (RO 0 without a memory BAR or ROM)
  MASTER: 0x0004, //       RW  Bus Master enable
  SPECIAL: 0x0008, //      RO  Special Cycles: 0
  INVALIDATE: 0x0010, //   RO  Memory Write and Invalidate: 0
  VGA_PALETTE: 0x0020, //  RO  VGA palette snoop: 0
  PARITY: 0x0040, //       RW  Parity Error Response
  STEPPING: 0x0080, //     RO  IDSEL stepping: 0
  SERR: 0x0100, //         RW  SERR# enable
  FAST_BACK: 0x0200, //    RO  Fast back-to-back: 0
  INTX_DISABLE: 0x0400, // RW  Interrupt Disable: the function may not assert INTx
} as const;

/** Bits of the Status register. */
export const PciStatus = {
  INTERRUPT: 0x0008, //         RO   Interrupt Status: the function's INTx condition
  CAP_LIST: 0x0010, //          RO   Capabilities List present
  MHZ66: 0x0020, //             RO   66 MHz capable: 0
  FAST_BACK: 0x0080, //         RO   Fast back-to-back capable: 0
  PARITY: 0x0100, //            RW1C Master Data Parity Error
  DEVSEL_MEDIUM: 0x0200, //     RO   DEVSEL timing medium (conventional PCI only)
  SIG_TARGET_ABORT: 0x0800, //  RW1C Signaled Target Abort
  REC_TARGET_ABORT: 0x1000, //  RW1C Received Target Abort
  REC_MASTER_ABORT: 0x2000, //  RW1C Received Master Abort
  SIG_SYSTEM_ERROR: 0x4000, //  RW1C Signaled System Error
  DETECTED_PARITY: 0x8000, //   RW1C Detected Parity Error
} as const;

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
