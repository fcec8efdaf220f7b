// BARs sized like hardware (write all-ones, read the size mask with the type bits, restore), the
// 64-bit partner, the expansion ROM BAR with and without a ROM (QEMU's 0xFFFFF800 probe, G18),
// and the BAR regions' access-width enforcement.
import t from "tap";
import { buildRom, MSIX_BAR_SCRATCH } from "../../devices/pci-testdev/index.ts";
import { BarBits, definePciDevice, PciCommand, PciHeader, PciRegion, RegionFlag } from "../../src/index.ts";
import { EINVAL, errnoOf, type PciHarness, pciHarness } from "../fixtures/pci/harness.ts";

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
    t.equal(await errnoOf(h.client.regionRead(partner, 0, 4)), EINVAL, `region ${partner} refuses reads`);
    t.equal(await errnoOf(h.client.regionWrite32(partner, 0, 1)), EINVAL, `region ${partner} refuses writes`);
  }
  const ram = await h.client.getRegionInfo(2);
  t.ok(ram.flags & RegionFlag.MMAP && ram.fd !== null, "the RAM BAR offers an fd");
  const cfg = await h.client.getRegionInfo(PciRegion.CONFIG);
  t.equal(cfg.flags & RegionFlag.MMAP, 0, "config is never mmap-capable");
});

t.test("BAR regions enforce their declared access widths", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  t.equal(await errnoOf(h.client.regionRead(0, 0, 2)), EINVAL, "BAR0 takes 4-byte accesses only");
  t.equal(await errnoOf(h.client.regionRead(0, 0x1000, 4)), EINVAL, "outside BAR0");
  await h.client.regionWrite(1, 3, new Uint8Array([0xab]));
  t.same([...(await h.client.regionRead(1, 2, 2))], [0, 0xab], "I/O BAR: byte and word accesses");
  t.equal(await errnoOf(h.client.regionRead(1, 0, 8)), EINVAL, "I/O BAR: no 8-byte access");
  // BAR4: the device's part after the MSI-X structures takes 4/8 bytes; the framework checks it.
  await h.client.regionWrite(4, MSIX_BAR_SCRATCH, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
  t.same([...(await h.client.regionRead(4, MSIX_BAR_SCRATCH + 4, 4))], [5, 6, 7, 8]);
  t.equal(await errnoOf(h.client.regionRead(4, MSIX_BAR_SCRATCH, 2)), EINVAL, "2 bytes refused");
  t.equal(await errnoOf(h.client.regionRead(4, 0x7c, 8)), EINVAL, "straddling the table's end refused");
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
    EINVAL,
    "ROM is read-only",
  );
});

t.test("expansion ROM BAR without a ROM reads 0, also after QEMU's probe (G18)", async (t) => {
  const h = await pciHarness(oddBars);
  t.teardown(() => h.close());
  const rom = PciHeader.ROM_ADDRESS;
  await h.cfgWrite(rom, 4, 0xffff_f800);
  t.equal(await h.cfgRead(rom, 4), 0, "0xFFFFF800 reads back 0: no ROM");
  await h.cfgWrite(rom, 4, 0xffff_ffff);
  t.equal(await h.cfgRead(rom, 4), 0, "the enable bit is not even writable");
  t.equal((await h.client.getRegionInfo(PciRegion.ROM)).size, 0n, "region 6 has size 0");
  t.equal(await errnoOf(h.client.regionRead(PciRegion.ROM, 0, 4)), EINVAL);
});
