// bochs-display's register layout: the IDs, the BARs, BAR2's map (EDID, VGA ports, DISPI, the
// QEMU extension registers) and the values the registers take. The register table is in
// README.md beside this file.

export const BOCHS_IDS = {
  vendor: 0x1234, //          the vendor ID QEMU's display devices use
  device: 0x1111, //          bochs / stdvga DISPI interface
  subsystemVendor: 0x1af4, // what QEMU gives its PCI devices
  subsystem: 0x1100,
  classCode: 0x038000, //     display controller, other (not VGA compatible)
  revision: 0x02, //          2: the QEMU extension registers at BAR2 + 0x600 exist
} as const;

export const FB_BAR = 0;
export const MMIO_BAR = 2;
export const MMIO_SIZE = 0x1000;

/** Byte offsets in BAR2. */
export const Mmio = {
  EDID: 0x000, //      0x000-0x3ff  EDID blob (RO)
  VGA: 0x400, //       0x400-0x41f  VGA ports 0x3c0-0x3df
  DISPI: 0x500, //     0x500-0x515  DISPI registers, 16 bits each, index * 2
  QEXT: 0x600, //      0x600-0x607  QEMU extension registers
} as const;

/** DISPI register indices (BAR2 + 0x500 + 2 * index). */
export const Dispi = {
  ID: 0x0,
  XRES: 0x1,
  YRES: 0x2,
  BPP: 0x3,
  ENABLE: 0x4,
  BANK: 0x5,
  VIRT_WIDTH: 0x6,
  VIRT_HEIGHT: 0x7,
  X_OFFSET: 0x8,
  Y_OFFSET: 0x9,
  VIDEO_MEMORY_64K: 0xa,
} as const;
export const DISPI_COUNT = 0xb;

/** DISPI ID values: the interface revision (the driver accepts 0xB0C0-0xB0CF). */
export const DISPI_ID0 = 0xb0c0;
export const DISPI_ID5 = 0xb0c5;

/** Bits of the ENABLE register. */
export const Enable = {
  ENABLED: 0x01,
  GETCAPS: 0x02,
  DAC_8BIT: 0x20,
  LFB_ENABLED: 0x40,
  NOCLEARMEM: 0x80,
} as const;
export const ENABLE_MASK = 0xe3;

/** What XRES / YRES / BPP read while ENABLE.GETCAPS is set. */
export const MAX_XRES = 8192;
export const MAX_YRES = 8192;
export const MAX_BPP = 32;
export const BPPS = [8, 15, 16, 24, 32];

/** QEMU extension registers (BAR2 + 0x600). */
export const Qext = {
  SIZE: 0x600, //       RO  bytes of extension registers: 8
  BYTEORDER: 0x604, //  RW  framebuffer byte order
} as const;
export const QEXT_SIZE = 8;
export const LITTLE_ENDIAN = 0x1e1e1e1e;
export const BIG_ENDIAN = 0xbebebebe;

/** VGA ports the driver uses, as offsets in BAR2 (port - 0x3c0 + 0x400). */
export const Vga = {
  ATT_W: 0x400, //  port 0x3c0: attribute controller index / data (flip-flop)
  MIS_W: 0x402, //  port 0x3c2: miscellaneous output (write)
  MIS_R: 0x40c, //  port 0x3cc: miscellaneous output (read)
  IS1_RC: 0x41a, // port 0x3da: input status 1 (read resets the attribute flip-flop)
} as const;
/** Attribute controller index bit 5: palette address source; 1 = the screen shows the picture. */
export const ATT_PAS = 0x20;
