// The PCI configuration-space layout both ends of a vfio-user connection speak through region 7
// (PciRegion.CONFIG): the type-0 header, the Command and Status bits, BAR type bits, and the MSI and
// MSI-X capabilities. The device side (src/pci) defines its config space with these; a client
// reads and writes registers by them. Offsets and bits are the PCI specification's; the access
// notes say how this project's device side implements each register.

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
  BAR0: 0x10, //               RW   Base Address Register 0 (u32; type bits in BarBits)
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

/** Type bits of a BAR register. */
export const BarBits = {
  IO: 0x1, //            RO  I/O space BAR
  MEM_TYPE_64: 0x4, //   RO  memory BAR with a 64-bit address (bits 2:1 = 10b)
  PREFETCH: 0x8, //      RO  prefetchable memory
  ROM_ENABLE: 0x1, //    RW  (ROM BAR) address decode enable
} as const;

/** MSI capability (ID 0x05): register offsets (the layout depends on 64-bit and per-vector masking). */
export const MsiCap = {
  ID: 0x05, //             capability ID
  CONTROL: 0x02, //        RW  Message Control (u16, bits in MsiControl)
  ADDRESS_LO: 0x04, //     RW  Message Address (u32, bits 1:0 RO 0)
  ADDRESS_HI: 0x08, //     RW  Message Upper Address (u32, 64-bit only)
  DATA_32: 0x08, //        RW  Message Data (u16), 32-bit layout
  DATA_64: 0x0c, //        RW  Message Data (u16), 64-bit layout
  MASK_32: 0x0c, //        RW  Mask Bits (u32), 32-bit layout
  PENDING_32: 0x10, //     RO  Pending Bits (u32), 32-bit layout
  MASK_64: 0x10, //        RW  Mask Bits (u32), 64-bit layout
  PENDING_64: 0x14, //     RO  Pending Bits (u32), 64-bit layout
} as const;

/** Bits of the MSI Message Control register. */
export const MsiControl = {
  ENABLE: 0x0001, //            RW  MSI Enable
  MMC_MASK: 0x000e, //          RO  Multiple Message Capable: log2(vectors) in bits 3:1
  MME_MASK: 0x0070, //          RW  Multiple Message Enable: log2(allocated) in bits 6:4
  ADDR64: 0x0080, //            RO  64-bit address capable
  PER_VECTOR_MASK: 0x0100, //   RO  per-vector masking capable
} as const;

/** MSI-X capability (ID 0x11): register offsets. */
export const MsixCap = {
  ID: 0x11, //       capability ID
  CONTROL: 0x02, //  RW  Message Control (u16, bits in MsixControl)
  TABLE: 0x04, //    RO  Table Offset (31:3) | Table BIR (2:0)
  PBA: 0x08, //      RO  PBA Offset (31:3) | PBA BIR (2:0)
  SIZE: 12,
} as const;

/** Bits of the MSI-X Message Control register. */
export const MsixControl = {
  TABLE_SIZE_MASK: 0x07ff, //  RO  Table Size - 1
  FUNCTION_MASK: 0x4000, //    RW  Function Mask: every vector masked
  ENABLE: 0x8000, //           RW  MSI-X Enable
} as const;

/** One MSI-X table entry (16 bytes). */
export const MsixEntry = {
  ADDRESS_LO: 0x0, //      RW  Message Address (bits 1:0 RO 0)
  ADDRESS_HI: 0x4, //      RW  Message Upper Address
  DATA: 0x8, //            RW  Message Data
  VECTOR_CONTROL: 0xc, //  RW  bit 0: Mask (1 at reset); other bits RO 0
  SIZE: 16,
} as const;

export const MSIX_ENTRY_MASKED = 0x1;
