// Config space through the client: the type-0 header, read-only bits, RW1C bits, and accesses of
// every width at odd offsets, as QEMU and other clients make them.
import t from "tap";
import { Reg } from "../../devices/pci-testdev/index.ts";
import {
  ConfigSpace,
  ExpressCap,
  ExpressDevSta,
  PciCommand,
  PciHeader,
  PciRegion,
  PciStatus,
} from "../../src/index.ts";
import { EINVAL, errnoOf, le, leNumber, pciHarness } from "../fixtures/pci/harness.ts";

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
  t.equal(await errnoOf(h.client.regionRead(PciRegion.CONFIG, 4095, 2)), EINVAL, "past the end: EINVAL");
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
