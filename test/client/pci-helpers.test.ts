// The client's PCI config-space helpers against the PCI devices: the capability walk (standard and
// extended) checked against each device's own declared layout, BAR sizing against the BARs and ROM
// it declared (and the registers restored), and the Command bits it implements. The walker's error
// paths run on synthetic config images.
import t from "tap";
import { edu } from "../../devices/edu/index.ts";
import { gpioIdio16 } from "../../devices/gpio-idio16/index.ts";
import { nvme } from "../../devices/nvme/index.ts";
import { pciTestdev } from "../../devices/pci-testdev/index.ts";
import { walkCapabilities } from "../../src/client/pci-config.ts";
import {
  ExpressCap,
  ExtCap,
  MsiCap,
  MsixCap,
  PciCommand,
  type PciDeviceDefinition,
  PciHeader,
  PciRegion,
  PciStatus,
  PmCap,
  VendorCap,
} from "../../src/index.ts";
import { closeFds } from "../../src/util/fds.ts";
import { servePci } from "./serve-pci.ts";

const DEVICES: [string, PciDeviceDefinition, Record<string, string>?][] = [
  ["pci-testdev", pciTestdev],
  ["gpio-idio16", gpioIdio16],
  ["edu", edu],
  ["nvme", nvme, { size: "1M" }],
];

const CAP_ID: Record<string, number> = {
  pm: PmCap.ID,
  msi: MsiCap.ID,
  msix: MsixCap.ID,
  express: ExpressCap.ID,
  vendor: VendorCap.ID,
  dsn: ExtCap.DSN_ID,
  vsec: ExtCap.VSEC_ID,
};

for (const [name, def, options] of DEVICES) {
  t.test(`${name}: the capability walk finds every declared capability, standard and extended`, async (t) => {
    const s = await servePci(def, options);
    const placed = [...s.device.pci.layout.capabilities].sort(
      (x, y) => Number(x.extended) - Number(y.extended) || x.offset - y.offset,
    );
    const want = placed.map((c) => ({
      id: CAP_ID[c.kind]!,
      offset: c.offset,
      extended: c.extended,
      version: c.extended ? 1 : null,
    }));
    const got = await s.client.capabilities();
    t.same(got, want, `${want.length} capabilities, in list order`);
    for (const c of want) {
      t.same(await s.client.findCapability(c.id, { extended: c.extended }), c, `find 0x${c.id.toString(16)}`);
    }
    t.equal(await s.client.findCapability(0x7f), null, "an id the device does not have");
    await s.close();
  });
}

t.test("the lists as the devices declare them", async (t) => {
  const ids = async (def: PciDeviceDefinition, options?: Record<string, string>) => {
    const s = await servePci(def, options);
    const caps = await s.client.capabilities();
    await s.close();
    return caps.map((c) => `${c.extended ? "ext:" : ""}0x${c.id.toString(16)}`).sort();
  };
  t.same(await ids(pciTestdev), ["0x1", "0x10", "0x11", "0x5", "0x9", "ext:0x3", "ext:0xb"]);
  t.same(await ids(gpioIdio16), [], "no capability list");
  t.same(await ids(edu), ["0x5"], "MSI only");
  t.same(await ids(nvme, { size: "1M" }), ["0x1", "0x10", "0x11"], "PCIe with no extended capability");
});

t.test(
  "walkCapabilities on hand-made config spaces: empty lists, loops, pointers out of range",
  async (t) => {
    const image = (size: number, caps: [number, number, number][], capList = true) => {
      const c = new Uint8Array(size);
      if (capList) c[PciHeader.STATUS] = PciStatus.CAP_LIST;
      c[PciHeader.CAPABILITIES] = caps[0]?.[0] ?? 0;
      for (const [at, id, next] of caps) {
        c[at] = id;
        c[at + 1] = next;
      }
      return c;
    };
    t.same(walkCapabilities(image(256, [[0x40, 5, 0]], false)), [], "Status says there is no list");
    t.same(
      walkCapabilities(image(256, [[0x43, 5, 0]])).map((c) => c.offset),
      [0x40],
      "the pointer's low two bits are reserved",
    );
    t.throws(
      () =>
        walkCapabilities(
          image(256, [
            [0x40, 5, 0x50],
            [0x50, 0x11, 0x40],
          ]),
        ),
      /the pointer at 0x51 loops back to 0x40/,
    );
    t.throws(
      () => walkCapabilities(image(256, [[0x20, 5, 0]])),
      /pointer 0x20 at 0x34 is outside \[0x40, 0x100\)/,
    );
    const ext = new Uint8Array(4096);
    const dv = new DataView(ext.buffer);
    dv.setUint32(0x100, 0x0003 | (1 << 16) | (0x140 << 20), true);
    dv.setUint32(0x140, 0x000b | (2 << 16) | (0x100 << 20), true);
    t.throws(
      () => walkCapabilities(ext),
      /extended capability list: the pointer at 0x140 loops back to 0x100/,
    );
    dv.setUint32(0x140, 0x000b | (2 << 16) | (0x0f0 << 20), true);
    t.throws(() => walkCapabilities(ext), /pointer 0xf0 at 0x140 is outside \[0x100, 0x1000\)/);
    dv.setUint32(0x140, 0x000b | (2 << 16), true);
    t.same(walkCapabilities(ext), [
      { id: 3, offset: 0x100, extended: true, version: 1 },
      { id: 0xb, offset: 0x140, extended: true, version: 2 },
    ]);
    dv.setUint32(0x100, 0xffff_ffff, true);
    t.same(walkCapabilities(ext), [], "all-ones: no function there");
  },
);

for (const [name, def, options] of DEVICES) {
  t.test(`${name}: BAR sizing finds each declared BAR and the ROM, and restores the registers`, async (t) => {
    const s = await servePci(def, options);
    const layout = s.device.pci.layout;
    // Decode on, and addresses in the BARs, as a driver leaves them: sizing must give both back.
    await s.client.updateCommand(PciCommand.MEMORY | PciCommand.IO);
    const before = await s.client.readConfigSpace();
    const cmdBefore = await s.client.configRead(PciHeader.COMMAND, 2);
    const sized = await s.client.sizeBars();
    const after = await s.client.readConfigSpace();
    t.same(after.subarray(0, 0x40), before.subarray(0, 0x40), "the header reads as it did before");
    t.equal(await s.client.configRead(PciHeader.COMMAND, 2), cmdBefore, "decode bits restored");
    for (const bar of sized) {
      if (bar.index === PciRegion.ROM) {
        const rom = layout.rom;
        t.equal(bar.kind, rom ? "rom" : "none", "ROM");
        t.equal(bar.size, BigInt(rom?.size ?? 0), `ROM size ${rom?.size ?? 0}`);
        continue;
      }
      const want = layout.bars[bar.index];
      if (!want) {
        t.equal(bar.kind, "none", `BAR ${bar.index} not implemented`);
        t.equal(bar.size, 0n);
        continue;
      }
      t.same(
        { kind: bar.kind, is64: bar.is64, prefetchable: bar.prefetchable, size: bar.size },
        { kind: want.kind, is64: want.is64, prefetchable: want.prefetchable, size: BigInt(want.size) },
        `BAR ${bar.index} (${want.name})`,
      );
      const info = await s.client.getRegionInfo(bar.index);
      if (info.fd !== null) closeFds([info.fd]);
      t.equal(info.size, bar.size, `BAR ${bar.index}: the size its region info reports`);
    }
    const declared = layout.bars.filter((b) => b !== undefined).length;
    t.equal(
      sized.filter((b) => b.kind === "memory" || b.kind === "io").length,
      declared,
      "every declared BAR",
    );
    await s.close();
  });
}

t.test(
  "pci-testdev: each BAR kind sized by itself, with its address and the upper half of a 64-bit BAR",
  async (t) => {
    const s = await servePci(pciTestdev);
    const bar0 = PciHeader.BAR0;
    await s.client.configWrite(bar0, 4, 0xfebf_0000);
    await s.client.configWrite(bar0 + 8, 4, 0xe000_000c); // BAR2 low: address bits and type bits
    await s.client.configWrite(bar0 + 12, 4, 0x0000_0001); // BAR2 high
    t.same(await s.client.sizeBar(0), {
      index: 0,
      kind: "memory",
      is64: false,
      prefetchable: false,
      size: 0x1000n,
      value: 0xfebf_0000n,
    });
    t.match(await s.client.sizeBar(1), { kind: "io", size: 32n }, "I/O");
    t.same(await s.client.sizeBar(2), {
      index: 2,
      kind: "memory",
      is64: true,
      prefetchable: true,
      size: 0x10000n,
      value: 0x1_e000_000cn,
    });
    t.equal(await s.client.configRead(bar0 + 12, 4), 1, "the upper half restored");
    await t.rejects(s.client.sizeBar(3), /BAR 3 is the upper half of 64-bit BAR 2/);
    await t.rejects(s.client.sizeBar(7), RangeError);
    t.match(await s.client.sizeBar(PciRegion.ROM), { kind: "rom", size: 2048n, value: 0n });
    t.equal(await s.client.configRead(PciHeader.ROM_ADDRESS, 4), 0, "the ROM stays disabled");
    await s.close();
  },
);

t.test(
  "Command bits: memory and I/O decode, Bus Master, on and off, as each function implements them",
  async (t) => {
    const { MEMORY, IO, MASTER } = PciCommand;
    const check = async (def: PciDeviceDefinition, implemented: number, options?: Record<string, string>) => {
      const s = await servePci(def, options);
      const name = def.name;
      t.equal(
        (await s.client.setMemoryDecode(true)) & MEMORY,
        implemented & MEMORY,
        `${name}: memory decode on`,
      );
      t.equal((await s.client.setIoDecode(true)) & IO, implemented & IO, `${name}: I/O decode on`);
      t.equal((await s.client.setBusMaster(true)) & MASTER, MASTER, `${name}: Bus Master on`);
      t.equal(
        s.device.pci.command & (MEMORY | IO | MASTER),
        implemented | MASTER,
        `${name}: the device sees them`,
      );
      t.equal((await s.client.setBusMaster(false)) & MASTER, 0, `${name}: Bus Master off`);
      t.equal((await s.client.setMemoryDecode(false)) & MEMORY, 0, `${name}: memory decode off`);
      t.equal((await s.client.setIoDecode(false)) & IO, 0, `${name}: I/O decode off`);
      t.equal(s.device.pci.command & (MEMORY | IO | MASTER), 0);
      await s.close();
    };
    await check(pciTestdev, MEMORY | IO);
    await check(gpioIdio16, IO); // an I/O BAR only: Memory Space is read-only 0
    await check(edu, MEMORY); // a memory BAR only: I/O Space is read-only 0
    await check(nvme, MEMORY, { size: "1M" });
  },
);

t.test("edu: Bus Master gates the device's DMA", async (t) => {
  const s = await servePci(edu);
  const mem = await s.client.mapMemory(0x10_0000n, 0x1000);
  mem.bytes.fill(0x5a, 0, 16);
  const run = async () => {
    await s.client.regionWrite64(0, 0x80, 0x10_0000n); // DMA_SRC
    await s.client.regionWrite64(0, 0x88, 0x40000n); // DMA_DST: the device buffer
    await s.client.regionWrite64(0, 0x90, 16n); // DMA_COUNT
    await s.client.regionWrite32(0, 0x98, 1); // START
    for (let i = 0; i < 200 && (await s.client.regionRead32(0, 0x98)) & 1; i++)
      await new Promise((r) => setTimeout(r, 2));
    return s.client.regionRead32(0, 0x98);
  };
  await s.client.setBusMaster(false);
  t.equal((await run()) & 0x8, 0x8, "Bus Master off: the transfer fails");
  await s.client.setBusMaster(true);
  t.equal((await run()) & 0x8, 0, "Bus Master on: it works");
  t.equal(await s.client.regionRead64(0, 0x40008), 0x5a5a_5a5a_5a5a_5a5an, "the bytes reached the buffer");
  await s.close();
});
