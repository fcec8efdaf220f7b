// pci-testdev: a PCI Express test function that carries every part of the PCI layer — a 32-bit
// memory BAR of registers, an I/O BAR, a 64-bit prefetchable RAM BAR the client may mmap, a 64-bit
// BAR holding the MSI-X table and PBA beside device memory, an expansion ROM, INTx, and the PM,
// MSI (per-vector masking), MSI-X, Express (FLR), vendor-specific, Device Serial Number and VSEC
// capabilities. Its registers let a test raise and lower interrupt vectors, drive INTx, report
// errors and see which resets happened. The register table is in README.md beside this file.
import { definePciDevice, type PciResetKind } from "../../src/index.ts";

export const PCI_TESTDEV_IDS = {
  vendor: 0x1234,
  device: 0x5646,
  subsystemVendor: 0x1234,
  subsystem: 0x0001,
  classCode: 0xff0000, // unassigned class: no driver claims it by class
  revision: 0x01,
} as const;

export const ID_VALUE = 0x5449_4350; // "PCIT" read as little-endian bytes

/** BAR 0 registers (32-bit accesses only). */
export const Reg = {
  ID: 0x00, //          RO  identification, reads 0x54494350 ("PCIT")
  SCRATCH: 0x04, //     RW  free for the client; 0 after reset
  RAISE: 0x08, //       WO  raise interrupt vector N (routed to MSI-X, MSI or INTx)
  LOWER: 0x0c, //       WO  lower vector N (INTx drops when no vector holds it)
  INTX: 0x10, //        RW  bit 0 drives the INTx line directly
  IRQ_MODE: 0x14, //    RO  0 none, 1 INTx, 2 MSI, 3 MSI-X (what RAISE goes to)
  STATUS_SET: 0x18, //  WO  set these config Status error bits (RW1C bits 8, 11-15)
  DEVSTA_SET: 0x1c, //  WO  set these PCIe Device Status error bits (RW1C bits 3:0)
  RESET_COUNT: 0x20, // RO  resets since the server started (not cleared by a reset)
  LAST_RESET: 0x24, //  RO  last reset: 0 none, 1 device, 2 FLR, 3 D3hot->D0
  ERR: 0x28, //         WO  signal the ERR notifier
  REQ: 0x2c, //         WO  signal the REQ notifier
  POWER: 0x30, //       RO  PM PowerState: 0 D0, 3 D3hot
} as const;

export const Bars = {
  REGS: 0, //  32-bit memory, 4 KiB, registers above, 4-byte accesses
  IO: 1, //    I/O, 32 bytes of byte-addressable scratch, 1/2/4-byte accesses
  RAM: 2, //   64-bit prefetchable memory, 64 KiB, shared memory the client may mmap
  MSIX: 4, //  64-bit memory, 8 KiB: MSI-X table at 0, PBA at 0x800, scratch at 0x1000 (4/8-byte)
} as const;

export const MSIX_VECTORS = 8;
export const MSI_VECTORS = 4;
export const MSIX_PBA_OFFSET = 0x800;
export const MSIX_BAR_SCRATCH = 0x1000;
export const SERIAL = 0x0056_4655_0000_0001n;

const RESET_CODE: Record<PciResetKind, number> = { device: 1, flr: 2, power: 3 };

/** A 2 KiB option ROM: 0x55AA signature, an init entry that only returns (RETF), a PCI data
 * structure naming this device, a readable string, and a zero checksum. */
export function buildRom(): Uint8Array {
  const rom = new Uint8Array(2048);
  const dv = new DataView(rom.buffer);
  rom[0] = 0x55;
  rom[1] = 0xaa;
  rom[2] = rom.length / 512; // image size in 512-byte units
  rom[3] = 0xcb; // RETF: a BIOS calling the init entry gets straight back
  const pcir = 0x1c;
  dv.setUint16(0x18, pcir, true);
  rom.set([0x50, 0x43, 0x49, 0x52], pcir); // "PCIR"
  dv.setUint16(pcir + 4, PCI_TESTDEV_IDS.vendor, true);
  dv.setUint16(pcir + 6, PCI_TESTDEV_IDS.device, true);
  dv.setUint16(pcir + 0x0a, 0x18, true); // structure length
  rom[pcir + 0x0d] = PCI_TESTDEV_IDS.classCode & 0xff;
  rom[pcir + 0x0e] = (PCI_TESTDEV_IDS.classCode >> 8) & 0xff;
  rom[pcir + 0x0f] = (PCI_TESTDEV_IDS.classCode >> 16) & 0xff;
  dv.setUint16(pcir + 0x10, rom.length / 512, true); // image length
  rom[pcir + 0x14] = 0x00; // code type: x86 PC-AT
  rom[pcir + 0x15] = 0x80; // last image
  rom.set(new TextEncoder().encode("vfio-user-node pci-testdev option ROM"), 0x40);
  const sum = rom.reduce((a, b) => (a + b) & 0xff, 0);
  rom[rom.length - 1] = (0x100 - sum) & 0xff;
  return rom;
}

export const pciTestdev = definePciDevice({
  name: "pci-testdev",
  summary: "PCIe test function: every BAR kind, ROM, INTx, PM, MSI, MSI-X, FLR, vendor caps, DSN",
  ids: PCI_TESTDEV_IDS,
  bars: [
    { index: Bars.REGS, kind: "memory", size: 0x1000, accessSizes: [4], name: "regs" },
    { index: Bars.IO, kind: "io", size: 32, accessSizes: [1, 2, 4], name: "io" },
    {
      index: Bars.RAM,
      kind: "memory",
      size: 0x10000,
      is64: true,
      prefetchable: true,
      memory: true,
      mmap: true,
      name: "ram",
    },
    {
      index: Bars.MSIX,
      kind: "memory",
      size: 0x2000,
      is64: true,
      memory: true,
      accessSizes: [4, 8],
      name: "msix",
    },
  ],
  rom: { data: buildRom() },
  capabilities: {
    pm: { noSoftReset: false },
    msi: { vectors: MSI_VECTORS, is64: true, perVectorMask: true },
    msix: { vectors: MSIX_VECTORS, bar: Bars.MSIX, tableOffset: 0, pbaOffset: MSIX_PBA_OFFSET },
    express: { maxPayload: 256, flr: true, linkSpeed: 1, linkWidth: 1 },
    // "VFU", then one byte the driver may write.
    vendor: { data: [0x56, 0x46, 0x55, 0x00, 0x00], writable: [0, 0, 0, 0xff, 0] },
    dsn: { serial: SERIAL },
    vsec: { id: 0x5646, rev: 1, data: [0x01, 0x00, 0x00, 0x00], writable: [0, 0xff, 0xff, 0] },
  },
  interrupts: { intx: true },
  create(ctx) {
    const io = new Uint8Array(32);
    const ram = ctx.bar(Bars.RAM).memory!;
    const msixBar = ctx.bar(Bars.MSIX).memory!;
    const s = { scratch: 0, intx: 0, resets: 0, last: 0 };
    const modes = { none: 0, intx: 1, msi: 2, msix: 3 } as const;
    return {
      bars: {
        [Bars.REGS]: {
          read(offset) {
            switch (offset) {
              case Reg.ID:
                return ID_VALUE;
              case Reg.SCRATCH:
                return s.scratch;
              case Reg.INTX:
                return s.intx;
              case Reg.IRQ_MODE:
                return modes[ctx.irq.mode];
              case Reg.RESET_COUNT:
                return s.resets;
              case Reg.LAST_RESET:
                return s.last;
              case Reg.POWER:
                return ctx.pci.powerState;
              default:
                return 0;
            }
          },
          write(offset, data) {
            const v = new DataView(data.buffer, data.byteOffset, 4).getUint32(0, true);
            switch (offset) {
              case Reg.SCRATCH:
                s.scratch = v;
                break;
              case Reg.RAISE:
                if (v < MSIX_VECTORS) ctx.irq.raise(v);
                break;
              case Reg.LOWER:
                if (v < MSIX_VECTORS) ctx.irq.lower(v);
                break;
              case Reg.INTX:
                s.intx = v & 1;
                ctx.irq.setIntx(s.intx === 1);
                break;
              case Reg.STATUS_SET:
                ctx.pci.reportStatus(v);
                break;
              case Reg.DEVSTA_SET:
                ctx.pci.reportExpressErrors(v);
                break;
              case Reg.ERR:
                ctx.irq.error();
                break;
              case Reg.REQ:
                ctx.irq.request();
                break;
            }
          },
        },
        [Bars.IO]: {
          read: (offset, size) => io.slice(offset, offset + size),
          write: (offset, data) => io.set(data, offset),
        },
      },
      reset(kind) {
        s.scratch = 0;
        s.intx = 0;
        s.resets++;
        s.last = RESET_CODE[kind];
        io.fill(0);
        ram.fill(0);
        msixBar.fill(0, MSIX_BAR_SCRATCH);
      },
    };
  },
});
