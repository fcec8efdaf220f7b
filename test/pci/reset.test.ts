// Resets of a PCI function: DEVICE_RESET, client disconnect, Function Level Reset through the
// Express capability, and the PM soft reset when leaving D3hot — each returns config space
// (Command, BARs, MSI/MSI-X state) and the device model to their power-on values.
import t, { type Test } from "tap";
import { MSIX_PBA_OFFSET, pciTestdev, Reg } from "../../devices/pci-testdev/index.ts";
import {
  createMemoryPair,
  definePciDevice,
  ExpressCap,
  ExpressDevCtl,
  MsiControl,
  MsixControl,
  PciCommand,
  PciDevice,
  PciHeader,
  PciIrq,
  PciRegion,
  PmCap,
  PmCsr,
  serveConnection,
  silentLogger,
  VfioUserClient,
} from "../../src/index.ts";
import { DeviceDma } from "../../src/iommu/dma.ts";
import { type PciHarness, pciHarness, tick } from "../fixtures/pci/harness.ts";

const PM = 0x40;
const MSI_CONTROL = 0x4a;
const MSIX_CONTROL = 0x62;
const DEVCTL = 0x6c + ExpressCap.DEVCTL;
const LNKCTL = 0x6c + ExpressCap.LNKCTL;
const LastReset = { device: 1, flr: 2, power: 3 } as const;

/** Put the function in a thoroughly non-reset state; returns the config bytes it then has. */
async function dirty(h: PciHarness): Promise<Uint8Array> {
  await h.cfgWrite(PciHeader.BAR0, 4, 0xfebf_0000);
  await h.cfgWrite(PciHeader.BAR0 + 8, 4, 0xfe00_000c);
  await h.cfgWrite(PciHeader.ROM_ADDRESS, 4, 0xfeb0_0001);
  await h.cfgWrite(PciHeader.COMMAND, 2, PciCommand.MEMORY | PciCommand.IO | PciCommand.MASTER);
  await h.cfgWrite(PciHeader.INTERRUPT_LINE, 1, 11);
  await h.cfgWrite(MSI_CONTROL, 2, MsiControl.ENABLE);
  await h.cfgWrite(MSIX_CONTROL, 2, MsixControl.ENABLE | MsixControl.FUNCTION_MASK);
  await h.barWrite32(4, 0x0c, 0); // unmask MSI-X entry 0 (and touch the table)
  await h.barWrite32(0, Reg.RAISE, 1); // function-masked: pending in the PBA
  await h.barWrite32(0, Reg.SCRATCH, 0x1234);
  await h.client.regionWrite(1, 0, new Uint8Array([9, 9, 9, 9]));
  await h.cfgWrite(DEVCTL, 2, ExpressDevCtl.MPS_MASK & (1 << 5)); // MPS 256, relaxed/no-snoop off
  await h.cfgWrite(LNKCTL, 2, 0x0040); // common clock
  return h.client.regionRead(PciRegion.CONFIG, 0, 4096);
}

async function expectPowerOn(
  t: Test,
  h: PciHarness,
  what: string,
  keep: { devctl?: number; lnkctl?: number } = {},
) {
  t.equal(await h.cfgRead(PciHeader.COMMAND, 2), 0, `${what}: Command 0`);
  t.equal(await h.cfgRead(PciHeader.BAR0, 4), 0, `${what}: BAR0 address cleared`);
  t.equal(await h.cfgRead(PciHeader.BAR0 + 8, 4), 0x0c, `${what}: BAR2 type bits only`);
  t.equal(await h.cfgRead(PciHeader.ROM_ADDRESS, 4), 0, `${what}: ROM BAR cleared`);
  t.equal(await h.cfgRead(PciHeader.INTERRUPT_LINE, 1), 0, `${what}: Interrupt Line cleared`);
  t.equal((await h.cfgRead(MSI_CONTROL, 2)) & MsiControl.ENABLE, 0, `${what}: MSI disabled`);
  t.equal(await h.cfgRead(MSIX_CONTROL, 2), 7, `${what}: MSI-X disabled, unmasked`);
  t.equal(await h.barRead32(4, 0x0c), 1, `${what}: MSI-X entries masked again`);
  t.equal(await h.barRead32(4, MSIX_PBA_OFFSET), 0, `${what}: PBA clear`);
  t.equal(await h.barRead32(0, Reg.SCRATCH), 0, `${what}: device registers reset`);
  t.same([...(await h.client.regionRead(1, 0, 4))], [0, 0, 0, 0], `${what}: I/O scratch cleared`);
  t.equal(await h.cfgRead(DEVCTL, 2), keep.devctl ?? 0x2810, `${what}: Device Control`);
  t.equal(await h.cfgRead(LNKCTL, 2), keep.lnkctl ?? 0, `${what}: Link Control`);
  t.equal(h.device.pci.irq.mode, "intx", `${what}: back on INTx`);
}

t.test("DEVICE_RESET returns the function to power-on state", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  const [fd] = await h.client.enableInterrupts(PciIrq.MSIX, 0, 1);
  await dirty(h);
  await h.client.reset();
  await expectPowerOn(t, h, "DEVICE_RESET");
  t.equal(await h.barRead32(0, Reg.LAST_RESET), LastReset.device);
  t.ok(h.device.irqs.counters(PciIrq.MSIX, 0).bound, "the client's eventfds stay bound");
  t.equal(h.client.interruptCount(fd!), 0, "the pending vector was not delivered");
});

t.test("FLR: writing Initiate FLR resets device and config, keeping MPS and the link", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  const devcap = await h.cfgRead(0x6c + ExpressCap.DEVCAP, 4);
  t.ok(devcap & 0x1000_0000, "DevCap advertises FLR");
  await h.client.enableInterrupts(PciIrq.MSIX, 0, 8);
  await dirty(h);
  const before = await h.barRead32(0, Reg.RESET_COUNT);
  await h.cfgWrite(DEVCTL, 2, (1 << 5) | ExpressDevCtl.BCR_FLR);
  await expectPowerOn(t, h, "FLR", { devctl: 0x2810 | (1 << 5), lnkctl: 0x0040 });
  t.equal((await h.cfgRead(DEVCTL, 2)) & ExpressDevCtl.BCR_FLR, 0, "Initiate FLR reads 0");
  t.equal(await h.barRead32(0, Reg.LAST_RESET), LastReset.flr, "the model saw an FLR");
  t.equal(await h.barRead32(0, Reg.RESET_COUNT), before + 1);
  t.equal(h.device.pci.resets.flr, 1);
  t.ok(h.device.irqs.counters(PciIrq.MSIX, 7).bound, "eventfd bindings are the client's: kept");
  // A 1-byte write to the high byte of Device Control triggers it too.
  await h.barWrite32(0, Reg.SCRATCH, 5);
  await h.cfgWrite(DEVCTL + 1, 1, 0x80);
  t.equal(await h.barRead32(0, Reg.SCRATCH), 0, "byte write of bit 15 resets");
  t.equal(h.device.pci.resets.flr, 2);
});

t.test("a function without FLR ignores the bit", async (t) => {
  const def = definePciDevice({
    name: "no-flr",
    summary: "PCIe without FLR",
    ids: { vendor: 0x1234, device: 4, classCode: 0xff0000 },
    capabilities: { express: { flr: false } },
    create: () => ({}),
  });
  const h = await pciHarness(def);
  t.teardown(() => h.close());
  await h.cfgWrite(0x40 + ExpressCap.DEVCTL, 2, 0xffff);
  t.equal(h.device.pci.resets.flr, 0);
  t.equal((await h.cfgRead(0x40 + ExpressCap.DEVCTL, 2)) & ExpressDevCtl.BCR_FLR, 0);
});

t.test("PM: D3hot and back to D0 performs a soft reset; D1/D2 writes are ignored", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  const pmcsr = PM + PmCap.PMCSR;
  t.equal(await h.cfgRead(pmcsr, 2), 0, "D0, No_Soft_Reset clear");
  await h.cfgWrite(pmcsr, 2, 1);
  t.equal(await h.cfgRead(pmcsr, 2), 0, "D1 unsupported: stays D0");
  await dirty(h);
  await h.cfgWrite(pmcsr, 2, 3);
  t.equal(await h.barRead32(0, Reg.POWER), 3, "D3hot");
  t.equal(h.device.pci.resets.power, 0, "entering D3hot resets nothing");
  await h.cfgWrite(pmcsr, 2, 2);
  t.equal((await h.cfgRead(pmcsr, 2)) & PmCsr.STATE_MASK, 3, "D2 unsupported: stays D3hot");
  await h.cfgWrite(pmcsr, 2, 0);
  await expectPowerOn(t, h, "D3hot->D0");
  t.equal(await h.barRead32(0, Reg.LAST_RESET), LastReset.power);
});

t.test("PM with No_Soft_Reset keeps state across D3hot", async (t) => {
  const def = definePciDevice({
    name: "no-soft-reset",
    summary: "keeps state",
    ids: { vendor: 0x1234, device: 5, classCode: 0xff0000 },
    bars: [{ kind: "memory", size: 16 }],
    capabilities: { pm: { noSoftReset: true } },
    create: () => ({}),
  });
  const h = await pciHarness(def);
  t.teardown(() => h.close());
  await h.cfgWrite(PciHeader.BAR0, 4, 0xfe00_0000);
  t.equal(await h.cfgRead(0x44, 2), PmCsr.NO_SOFT_RESET);
  await h.cfgWrite(0x44, 2, 3);
  await h.cfgWrite(0x44, 2, 0);
  t.equal(await h.cfgRead(PciHeader.BAR0, 4), 0xfe00_0000, "BAR kept");
  t.equal(h.device.pci.resets.power, 0);
});

t.test("a client disconnect resets the function for the next client", async (t) => {
  const dma = new DeviceDma(silentLogger);
  const device = new PciDevice(pciTestdev, { dma, log: silentLogger });
  t.teardown(() => device.dispose());
  const connect = async () => {
    const [a, b] = createMemoryPair();
    const session = serveConnection(b, () => device, { dma });
    const client = await VfioUserClient.over(a);
    return { client, session };
  };
  const first = await connect();
  await first.client.enableInterrupts(PciIrq.MSIX, 0, 8);
  await first.client.regionWrite32(PciRegion.CONFIG, PciHeader.BAR0, 0xfebf_0000);
  await first.client.regionWrite32(PciRegion.CONFIG, MSIX_CONTROL, MsixControl.ENABLE);
  await first.client.regionWrite32(0, Reg.SCRATCH, 77);
  first.client.close();
  await first.session.ended;
  await tick();
  t.same(device.irqs.heldFds(), [], "the first client's eventfds are closed");
  const second = await connect();
  t.teardown(() => second.client.close());
  t.equal(await second.client.regionRead32(PciRegion.CONFIG, PciHeader.BAR0), 0, "BAR reset");
  t.equal((await second.client.regionRead32(PciRegion.CONFIG, 0x60)) >>> 16, 7, "MSI-X disabled");
  t.equal(await second.client.regionRead32(0, Reg.SCRATCH), 0, "device reset");
  t.equal(await second.client.regionRead32(0, Reg.LAST_RESET), LastReset.device);
});
