// Config space and the shape of a PCI function, through the client: the type-0 header, read-only
// and RW1C bits, accesses of every width at odd offsets (as QEMU and other clients make them);
// BARs sized like hardware (write all-ones, read the size mask with the type bits, restore), the
// 64-bit partner, the expansion ROM BAR with and without a ROM (QEMU's 0xFFFFF800 probe),
// the BAR regions' access widths; and the declaration checks of definePciDevice, each an Error
// naming the field before any client connects.
import t from "tap";
import { buildRom, MSIX_BAR_SCRATCH, pciTestdev, Reg } from "../../devices/pci-testdev/index.ts";
import {
  BarBits,
  ConfigSpace,
  definePciDevice,
  ExpressCap,
  ExpressDevSta,
  PciCommand,
  PciDevice,
  type PciDeviceSpec,
  PciHeader,
  PciRegion,
  PciStatus,
  RegionFlag,
  silentLogger,
} from "../../src/index.ts";
import { DeviceDma } from "../../src/iommu/dma.ts";
import { Errno, errnoOf, le, leNumber, type PciHarness, pciHarness } from "../fixtures/pci/harness.ts";

const EXPRESS = 0x6c;

t.test("ConfigSpace applies write masks and RW1C per byte", async (t) => {
  const cs = new ConfigSpace(256);
  cs.define(0x40, 4, { value: 0x1234_00ff, writable: 0x0000_ff0f, rw1c: 0x00f0_0000 });
  cs.set8(0x42, 0xf5); // the function sets status bits
  cs.write(0x40, le(0xffff_ffff, 4));
  t.equal(cs.get32(0x40), 0x1205_ffff, "RO bits kept, RW bits written, RW1C bits cleared");
  cs.write(0x41, new Uint8Array([0x12])); // one byte in the middle of the register
  t.equal(cs.get8(0x41), 0x12);
  t.throws(() => cs.read(0xff, 2), /outside/);
  t.throws(() => cs.write(0x100, new Uint8Array(1)), /outside/);
  cs.reset();
  t.equal(cs.get32(0x40), 0x1234_00ff, "reset restores power-on values");
  t.throws(() => new ConfigSpace(512), /neither 256 nor 4096/);
});

t.test("a watcher sees the old bytes and runs once per write", async (t) => {
  const cs = new ConfigSpace(256);
  cs.define(0x50, 2, { value: 0x0001, writable: 0xffff });
  const seen: number[] = [];
  cs.watch(0x50, 2, ({ old }) => {
    seen.push(leNumber(old));
  });
  cs.write(0x4c, new Uint8Array(8).fill(0xaa)); // a bulk write spanning the register
  cs.write(0x60, new Uint8Array(1)); // elsewhere: not watched
  t.same(seen, [0x0001]);
  t.equal(cs.get16(0x50), 0xaaaa);
});

t.test("the header reads as declared, in one bulk read and piecewise", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  const all = await h.client.regionRead(PciRegion.CONFIG, 0, 4096);
  t.equal(all.length, 4096, "QEMU's whole-space read succeeds");
  t.equal(leNumber(all.subarray(0, 2)), 0x1234);
  t.equal(leNumber(all.subarray(2, 4)), 0x5646);
  t.equal(await h.cfgRead(PciHeader.REVISION_ID, 4), 0xff00_0001, "class ff0000, revision 1 (dword at 8)");
  t.equal(await h.cfgRead(PciHeader.SUBSYSTEM_VENDOR_ID, 4), 0x0001_1234);
  t.equal(await h.cfgRead(PciHeader.HEADER_TYPE, 1), 0);
  t.equal(await h.cfgRead(PciHeader.INTERRUPT_PIN, 1), 1);
  t.equal(await h.cfgRead(PciHeader.CAPABILITIES, 1), 0x40);
  t.ok((await h.cfgRead(PciHeader.STATUS, 2)) & PciStatus.CAP_LIST, "Status.CAP_LIST");
  // Odd offsets and widths agree with the bulk read.
  for (const [off, size] of [
    [1, 1],
    [1, 2],
    [3, 4],
    [0x3b, 4],
    [0x45, 2],
    [0xff, 1],
    [0x101, 4],
    [0xffd, 2],
  ] as const) {
    t.equal(await h.cfgRead(off, size), leNumber(all.subarray(off, off + size)), `read ${size} at ${off}`);
  }
  t.equal(
    await errnoOf(h.client.regionRead(PciRegion.CONFIG, 4095, 2)),
    Errno.EINVAL,
    "past the end: EINVAL",
  );
});

t.test("read-only fields ignore writes; writable bits take them", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  await h.cfgWrite(PciHeader.VENDOR_ID, 4, 0xffff_ffff);
  t.equal(await h.cfgRead(PciHeader.VENDOR_ID, 4), 0x5646_1234, "IDs unchanged");
  await h.cfgWrite(PciHeader.COMMAND, 2, 0xffff);
  const writable =
    PciCommand.IO |
    PciCommand.MEMORY |
    PciCommand.MASTER |
    PciCommand.PARITY |
    PciCommand.SERR |
    PciCommand.INTX_DISABLE;
  t.equal(await h.cfgRead(PciHeader.COMMAND, 2), writable, "only the implemented Command bits stick");
  await h.cfgWrite(PciHeader.INTERRUPT_LINE, 2, 0xff0b); // line RW, pin RO
  t.equal(await h.cfgRead(PciHeader.INTERRUPT_LINE, 1), 0x0b);
  t.equal(await h.cfgRead(PciHeader.INTERRUPT_PIN, 1), 1);
  await h.cfgWrite(PciHeader.CAPABILITIES, 1, 0x80);
  t.equal(await h.cfgRead(PciHeader.CAPABILITIES, 1), 0x40, "cap pointer RO");
  await h.cfgWrite(PciHeader.LATENCY_TIMER, 1, 0x40);
  t.equal(await h.cfgRead(PciHeader.LATENCY_TIMER, 1), 0, "latency timer RO 0 on PCIe");
  await h.cfgWrite(PciHeader.CACHE_LINE_SIZE, 1, 0x10);
  t.equal(await h.cfgRead(PciHeader.CACHE_LINE_SIZE, 1), 0x10);
  // A 4-byte write at an odd offset touching Command's high byte and Status's low byte.
  await h.cfgWrite(PciHeader.COMMAND + 1, 4, 0);
  t.equal(await h.cfgRead(PciHeader.COMMAND, 2), writable & 0xff, "high byte of Command cleared alone");
  // Vendor capability: one writable byte in the middle of read-only ones.
  await h.cfgWrite(0xab, 4, 0xffff_ffff);
  t.same([...(await h.client.regionRead(PciRegion.CONFIG, 0xab, 5))], [0x56, 0x46, 0x55, 0xff, 0x00]);
  // A bulk write over the whole header changes nothing read-only.
  const before = await h.client.regionRead(PciRegion.CONFIG, 0, 64);
  await h.client.regionWrite(PciRegion.CONFIG, 0, new Uint8Array(64).fill(0xff));
  const after = await h.client.regionRead(PciRegion.CONFIG, 0, 64);
  t.equal(leNumber(after.subarray(0, 4)), leNumber(before.subarray(0, 4)));
  t.equal(leNumber(after.subarray(8, 12)), leNumber(before.subarray(8, 12)));
});

t.test("Status error bits are RW1C; Interrupt Status and CAP_LIST are read-only", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  const errors = PciStatus.SIG_TARGET_ABORT | PciStatus.REC_MASTER_ABORT | PciStatus.DETECTED_PARITY;
  await h.barWrite32(0, Reg.STATUS_SET, errors);
  let status = await h.cfgRead(PciHeader.STATUS, 2);
  t.equal(status & errors, errors, "the function reported errors");
  await h.cfgWrite(PciHeader.STATUS, 2, 0); // writing 0 clears nothing
  t.equal((await h.cfgRead(PciHeader.STATUS, 2)) & errors, errors);
  await h.cfgWrite(
    PciHeader.STATUS,
    2,
    PciStatus.REC_MASTER_ABORT | PciStatus.CAP_LIST | PciStatus.INTERRUPT,
  );
  status = await h.cfgRead(PciHeader.STATUS, 2);
  t.equal(status & errors, PciStatus.SIG_TARGET_ABORT | PciStatus.DETECTED_PARITY, "only the 1 bit cleared");
  t.ok(status & PciStatus.CAP_LIST, "CAP_LIST unaffected");
  await h.cfgWrite(PciHeader.STATUS + 1, 1, 0xff); // byte write to the high half
  t.equal((await h.cfgRead(PciHeader.STATUS, 2)) & 0xf900, 0, "all error bits cleared");

  const devsta = EXPRESS + ExpressCap.DEVSTA;
  await h.barWrite32(0, Reg.DEVSTA_SET, ExpressDevSta.CED | ExpressDevSta.URD);
  t.equal(await h.cfgRead(devsta, 2), ExpressDevSta.CED | ExpressDevSta.URD);
  await h.cfgWrite(devsta, 2, ExpressDevSta.URD);
  t.equal(await h.cfgRead(devsta, 2), ExpressDevSta.CED, "PCIe Device Status is RW1C too");
});

const bar = (n: number) => PciHeader.BAR0 + 4 * n;

/** What QEMU and Linux do: save, write all-ones, read, restore. Returns the value read. */
async function size32(h: PciHarness, reg: number): Promise<number> {
  const saved = await h.cfgRead(reg, 4);
  await h.cfgWrite(reg, 4, 0xffff_ffff);
  const mask = await h.cfgRead(reg, 4);
  await h.cfgWrite(reg, 4, saved);
  if ((await h.cfgRead(reg, 4)) !== saved) throw new Error(`0x${reg.toString(16)} not restored`);
  return mask;
}

const oddBars = definePciDevice({
  name: "odd-bars",
  summary: "a 32-bit prefetchable BAR and an 8 GiB 64-bit BAR",
  ids: { vendor: 0x1234, device: 0x0001, classCode: 0xff0000 },
  bars: [
    { kind: "memory", size: 0x100000, prefetchable: true }, // BAR0
    { index: 2, kind: "memory", size: 2 ** 33, is64: true, prefetchable: true }, // BAR2+3
    { index: 5, kind: "io", size: 4 },
  ],
  create: () => ({}),
});

t.test("every BAR kind of pci-testdev sizes like hardware", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  t.equal(await h.cfgRead(bar(0), 4), 0, "BAR0: 32-bit memory, type bits 0");
  t.equal(await size32(h, bar(0)), 0xffff_f000, "BAR0: 4 KiB");
  t.equal(await h.cfgRead(bar(1), 4), BarBits.IO, "BAR1: I/O");
  t.equal(await size32(h, bar(1)), 0xffff_ffe1, "BAR1: 32 bytes of I/O, bit 0 set");
  const mem64pf = BarBits.MEM_TYPE_64 | BarBits.PREFETCH;
  t.equal(await h.cfgRead(bar(2), 4), mem64pf, "BAR2: 64-bit prefetchable");
  t.equal(await size32(h, bar(2)), (0xffff_0000 | mem64pf) >>> 0, "BAR2 low half: 64 KiB");
  t.equal(await size32(h, bar(3)), 0xffff_ffff, "BAR3 (high half): every address bit writable");
  t.equal(await h.cfgRead(bar(4), 4), BarBits.MEM_TYPE_64, "BAR4: 64-bit non-prefetchable");
  t.equal(await size32(h, bar(4)), (0xffff_e000 | BarBits.MEM_TYPE_64) >>> 0, "BAR4: 8 KiB");
  // Programming an address like firmware does: bits below the size stay 0.
  await h.cfgWrite(bar(0), 4, 0xfebf_1234);
  t.equal(await h.cfgRead(bar(0), 4), 0xfebf_1000);
  await h.cfgWrite(bar(2), 4, 0x0000_0000);
  await h.cfgWrite(bar(3), 4, 0x0000_0080);
  t.equal(await h.cfgRead(bar(3), 4), 0x80, "64-bit address above 4 GiB");
  await h.cfgWrite(bar(1), 2, 0xc041); // a 2-byte write to the low half of the I/O BAR
  t.equal(await h.cfgRead(bar(1), 4), (0xc041 & ~0x1f) | 1);
  // QEMU's post-reset writes of 0 to every BAR register.
  for (let i = 0; i < 6; i++) await h.cfgWrite(bar(i), 4, 0);
  t.equal(await h.cfgRead(bar(2), 4), mem64pf, "type bits survive an address of 0");
});

t.test("32-bit prefetchable, > 4 GiB 64-bit and unused BARs", async (t) => {
  const h = await pciHarness(oddBars);
  t.teardown(() => h.close());
  t.equal(await size32(h, bar(0)), (0xfff0_0000 | BarBits.PREFETCH) >>> 0, "1 MiB prefetchable 32-bit");
  t.equal(
    await size32(h, bar(2)),
    (0 | BarBits.MEM_TYPE_64 | BarBits.PREFETCH) >>> 0,
    "8 GiB: low half all RO",
  );
  t.equal(await size32(h, bar(3)), 0xffff_fffe, "8 GiB: bit 32 of the address RO in the high half");
  t.equal(await size32(h, bar(1)), 0, "BAR1 (not declared) reads 0 after all-ones");
  t.equal(await size32(h, bar(4)), 0, "BAR4 (not declared) reads 0");
  t.equal(await size32(h, bar(5)), 0xffff_fffd, "4-byte I/O BAR");
  const info = await h.client.getRegionInfo(2);
  t.equal(info.size, 2n ** 33n, "region 2 reports 8 GiB");
  const cmd = await h.cfgWrite(PciHeader.COMMAND, 2, 0xffff).then(() => h.cfgRead(PciHeader.COMMAND, 2));
  t.ok(cmd & PciCommand.IO && cmd & PciCommand.MEMORY, "I/O and Memory enables exist");
});

t.test("a 64-bit BAR's partner is no region of its own", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  const info = await h.client.getDeviceInfo();
  t.ok(info.numRegions >= 9, "at least 9 regions (QEMU needs 8)");
  t.equal(info.numIrqs, 5);
  const sizes: bigint[] = [];
  for (let i = 0; i < 9; i++) sizes.push((await h.client.getRegionInfo(i)).size);
  t.same(sizes, [0x1000n, 32n, 0x10000n, 0n, 0x2000n, 0n, 2048n, 4096n, 0n]);
  for (const partner of [3, 5]) {
    t.equal(
      await errnoOf(h.client.regionRead(partner, 0, 4)),
      Errno.EINVAL,
      `region ${partner} refuses reads`,
    );
    t.equal(
      await errnoOf(h.client.regionWrite32(partner, 0, 1)),
      Errno.EINVAL,
      `region ${partner} refuses writes`,
    );
  }
  const ram = await h.client.getRegionInfo(2);
  t.ok(ram.flags & RegionFlag.MMAP && ram.fd !== null, "the RAM BAR offers an fd");
  const cfg = await h.client.getRegionInfo(PciRegion.CONFIG);
  t.equal(cfg.flags & RegionFlag.MMAP, 0, "config is never mmap-capable");
});

t.test("BAR regions enforce their declared access widths", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  t.equal(await errnoOf(h.client.regionRead(0, 0, 2)), Errno.EINVAL, "BAR0 takes 4-byte accesses only");
  t.equal(await errnoOf(h.client.regionRead(0, 0x1000, 4)), Errno.EINVAL, "outside BAR0");
  await h.client.regionWrite(1, 3, new Uint8Array([0xab]));
  t.same([...(await h.client.regionRead(1, 2, 2))], [0, 0xab], "I/O BAR: byte and word accesses");
  t.equal(await errnoOf(h.client.regionRead(1, 0, 8)), Errno.EINVAL, "I/O BAR: no 8-byte access");
  // BAR4: the device's part after the MSI-X structures takes 4/8 bytes; the framework checks it.
  await h.client.regionWrite(4, MSIX_BAR_SCRATCH, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
  t.same([...(await h.client.regionRead(4, MSIX_BAR_SCRATCH + 4, 4))], [5, 6, 7, 8]);
  t.equal(await errnoOf(h.client.regionRead(4, MSIX_BAR_SCRATCH, 2)), Errno.EINVAL, "2 bytes refused");
  t.equal(await errnoOf(h.client.regionRead(4, 0x7c, 8)), Errno.EINVAL, "straddling the table's end refused");
});

t.test("expansion ROM BAR with a ROM: sizing, enable bit, region 6", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  const rom = PciHeader.ROM_ADDRESS;
  t.equal(await h.cfgRead(rom, 4), 0);
  // QEMU's probe: write 0xFFFFF800, read back, restore.
  await h.cfgWrite(rom, 4, 0xffff_f800);
  const probed = await h.cfgRead(rom, 4);
  t.equal(probed, 0xffff_f800, "2 KiB ROM");
  t.equal(~(probed & 0xffff_f800) + 1, 2048, "QEMU's size formula gives 2048");
  await h.cfgWrite(rom, 4, 0xffff_ffff);
  t.equal(await h.cfgRead(rom, 4), 0xffff_f801, "all-ones: size mask and the enable bit");
  await h.cfgWrite(rom, 4, 0xfeb0_0001);
  t.equal(await h.cfgRead(rom, 4), 0xfeb0_0001, "address and enable");
  await h.cfgWrite(rom, 4, 0);
  const image = await h.client.regionRead(PciRegion.ROM, 0, 2048);
  t.same(image, buildRom(), "region 6 serves the ROM in one read");
  t.same([...image.subarray(0, 2)], [0x55, 0xaa]);
  t.equal(
    image.reduce((a, b) => (a + b) & 0xff, 0),
    0,
    "checksum 0",
  );
  t.equal(
    await errnoOf(h.client.regionWrite(PciRegion.ROM, 0, new Uint8Array(4))),
    Errno.EINVAL,
    "ROM is read-only",
  );
});

t.test("expansion ROM BAR without a ROM reads 0, also after QEMU's probe", async (t) => {
  const h = await pciHarness(oddBars);
  t.teardown(() => h.close());
  const rom = PciHeader.ROM_ADDRESS;
  await h.cfgWrite(rom, 4, 0xffff_f800);
  t.equal(await h.cfgRead(rom, 4), 0, "0xFFFFF800 reads back 0: no ROM");
  await h.cfgWrite(rom, 4, 0xffff_ffff);
  t.equal(await h.cfgRead(rom, 4), 0, "the enable bit is not even writable");
  t.equal((await h.client.getRegionInfo(PciRegion.ROM)).size, 0n, "region 6 has size 0");
  t.equal(await errnoOf(h.client.regionRead(PciRegion.ROM, 0, 4)), Errno.EINVAL);
});

const base: PciDeviceSpec = {
  name: "decl",
  summary: "declaration checks",
  ids: { vendor: 0x1234, device: 0x10, classCode: 0xff0000 },
  create: () => ({}),
};
const define = (over: Partial<PciDeviceSpec>) => () => definePciDevice({ ...base, ...over });

t.test("BAR declarations", async (t) => {
  t.throws(define({ bars: [{ kind: "memory", size: 3000 }] }), /power of two/);
  t.throws(define({ bars: [{ kind: "memory", size: 8 }] }), /from 16 bytes/);
  t.throws(define({ bars: [{ kind: "io", size: 2 }] }), /I\/O size 2/);
  t.throws(define({ bars: [{ kind: "io", size: 512 }] }), /4 to 256/);
  t.throws(define({ bars: [{ kind: "memory", size: 2 ** 32 }] }), /declare is64/);
  t.throws(define({ bars: [{ kind: "io", size: 16, is64: true }] }), /only memory BARs can be 64-bit/);
  t.throws(define({ bars: [{ kind: "io", size: 16, prefetchable: true }] }), /cannot be prefetchable/);
  t.throws(define({ bars: [{ index: 1, kind: "memory", size: 16, is64: true }] }), /even index/);
  t.throws(define({ bars: [{ index: 5, kind: "memory", size: 16, is64: true }] }), /even index/);
  t.throws(
    define({
      bars: [
        { index: 0, kind: "memory", size: 16, is64: true },
        { index: 1, kind: "memory", size: 16 },
      ],
    }),
    /64-bit partner/,
    "the partner of a 64-bit BAR is unusable",
  );
  t.throws(define({ bars: [{ index: 6, kind: "memory", size: 16 }] }), /index must be 0-5/);
  t.throws(define({ bars: [{ kind: "memory", size: 16, memory: true }] }), /multiple of 4096/);
  t.throws(define({ bars: [{ kind: "memory", size: 4096, mmap: true }] }), /mmap needs memory/);
  t.throws(define({ bars: [{ kind: "memory", size: 16, accessSizes: [3 as 1] }] }), /access size 3/);
  t.throws(define({ rom: { data: new Uint8Array(16), size: 1024 } }), /rom.size 1024/);
  t.throws(define({ rom: { data: new Uint8Array(5000), size: 4096 } }), /exceeds rom.size/);
  const auto = definePciDevice({
    ...base,
    bars: [
      { kind: "memory", size: 16 },
      { kind: "memory", size: 16, is64: true },
      { kind: "io", size: 4 },
    ],
    rom: { data: new Uint8Array(3000) },
  });
  t.same(
    auto.pci.bars.map((b) => b?.index),
    [0, undefined, 2, undefined, 4],
    "unindexed BARs take the next free slot; a 64-bit one the next even pair",
  );
  t.equal(auto.pci.rom?.size, 4096, "ROM size rounded up to a power of two");
});

t.test("IDs and capabilities", async (t) => {
  t.throws(define({ ids: { ...base.ids, vendor: 0xffff } }), /reserved/);
  t.throws(define({ ids: { ...base.ids, device: 0x10000 } }), /ids.device/);
  t.throws(define({ ids: { ...base.ids, classCode: 0x1000000 } }), /24-bit/);
  t.throws(define({ capabilities: { msi: { vectors: 3 } } }), /msi.vectors 3/);
  t.throws(define({ capabilities: { msix: { vectors: 4, bar: 0 } } }), /not a declared BAR/);
  t.throws(
    define({ bars: [{ kind: "io", size: 64 }], capabilities: { msix: { vectors: 4, bar: 0 } } }),
    /memory BAR, not I\/O/,
  );
  t.throws(
    define({ bars: [{ kind: "memory", size: 32 }], capabilities: { msix: { vectors: 4, bar: 0 } } }),
    /does not fit in BAR 0/,
  );
  t.throws(
    define({
      bars: [{ kind: "memory", size: 4096 }],
      capabilities: { msix: { vectors: 4, bar: 0, tableOffset: 0, pbaOffset: 0x30 } },
    }),
    /overlap/,
  );
  t.throws(
    define({
      bars: [{ kind: "memory", size: 4096, memory: true, mmap: true }],
      capabilities: { msix: { vectors: 4, bar: 0 } },
    }),
    /cannot be mmap-capable/,
  );
  t.throws(define({ capabilities: { dsn: { serial: 1n } } }), /need capabilities.express/);
  t.throws(define({ capabilities: { express: { maxPayload: 100 } } }), /maxPayload 100/);
  t.throws(define({ capabilities: { pm: { offset: 0x42 } } }), /4-byte aligned/);
  t.throws(
    define({ capabilities: { pm: { offset: 0x40 }, msi: { vectors: 1, offset: 0x44 } } }),
    /overlaps pm/,
  );
  t.throws(
    define({ capabilities: { express: {}, dsn: { serial: 1n, offset: 0x200 } } }),
    /first extended capability must sit at 0x100/,
  );
  t.throws(define({ capabilities: { vendor: { data: new Uint8Array(300) } } }), /exceeds 252/);
  t.throws(define({ name: "Not Kebab" }), /kebab-case/);
});

t.test("pinned capability offsets build a list in address order", async (t) => {
  const def = definePciDevice({
    ...base,
    capabilities: {
      pm: { offset: 0xc0 },
      msi: { vectors: 2 },
      vendor: [{ data: [1] }, { data: [2], offset: 0x80 }],
    },
  });
  const caps = def.pci.capabilities.map((c) => [c.kind, c.offset, c.next]);
  t.same(caps, [
    ["pm", 0xc0, 0],
    ["msi", 0x40, 0x50],
    ["vendor", 0x50, 0x80],
    ["vendor", 0x80, 0xc0],
  ]);
  t.equal(def.pci.configSize, 256, "no Express: conventional 256-byte config space");
});

t.test("the definition is an ordinary DeviceDefinition with 9 regions and 5 irq indices", async (t) => {
  t.equal(pciTestdev.bus, "pci");
  t.same(
    pciTestdev.regions.map((r) => r.index),
    [0, 1, 2, 3, 4, 5, 6, 7, 8],
  );
  t.same(
    pciTestdev.irqs.map((i) => [i.name, i.count]),
    [
      ["intx", 1],
      ["msi", 4],
      ["msix", 8],
      ["err", 1],
      ["req", 1],
    ],
  );
  const bad = definePciDevice({ ...base, create: () => ({ bars: { 2: {} } }) });
  t.throws(
    () => new PciDevice(bad, { dma: new DeviceDma(silentLogger), log: silentLogger }),
    /undeclared BAR 2/,
    "handlers for an undeclared BAR are refused when the device is built",
  );
});
