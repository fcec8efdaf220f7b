// Interrupt routing of a PCI function: MSI-X (function mask, per-vector masks, PBA), MSI
// (multiple message, per-vector mask and pending bits), INTx (level, Interrupt Disable, Interrupt
// Status), ERR and REQ — raised through pci-testdev's registers, observed on the client's eventfds
// and the IrqController's per-vector counters.
import t from "tap";
import { MSIX_PBA_OFFSET, Reg } from "../../devices/pci-testdev/index.ts";
import {
  IrqSetFlag,
  MSIX_ENTRY_MASKED,
  MsiControl,
  MsixControl,
  MsixEntry,
  PciCommand,
  PciHeader,
  PciIrq,
  PciStatus,
} from "../../src/index.ts";
import { le, leNumber, type PciHarness, pciHarness, tick } from "../fixtures/pci/harness.ts";

const MSI = 0x48;
const MSI_CONTROL = MSI + 2;
const MSI_MASK = MSI + 0x10;
const MSI_PENDING = MSI + 0x14;
const MSIX_CONTROL = 0x62;
const MSIX_BAR = 4;
const vectorControl = (v: number) => v * MsixEntry.SIZE + MsixEntry.VECTOR_CONTROL;

async function raise(h: PciHarness, v: number): Promise<void> {
  await h.barWrite32(0, Reg.RAISE, v);
}

async function pba(h: PciHarness): Promise<number> {
  return leNumber(await h.client.regionRead(MSIX_BAR, MSIX_PBA_OFFSET, 8));
}

t.test("MSI-X: delivery, function mask, per-vector masks and the PBA", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  const { client, device } = h;
  t.equal(await h.barRead32(0, Reg.IRQ_MODE), 1, "INTx until MSI-X is enabled");
  await h.cfgWrite(MSIX_CONTROL, 2, MsixControl.ENABLE);
  const fds = await client.enableInterrupts(PciIrq.MSIX, 0, 8);
  t.equal(await h.barRead32(0, Reg.IRQ_MODE), 3, "MSI-X mode");

  await raise(h, 0);
  t.equal(await client.waitForInterrupt(fds[0]!), 1, "vector 0 fires (table untouched: QEMU's case)");
  t.equal(device.irqs.counters(PciIrq.MSIX, 0).signalled, 1, "counter");

  // Function mask: raise latches in the PBA; clearing the mask delivers.
  await h.cfgWrite(MSIX_CONTROL, 2, MsixControl.ENABLE | MsixControl.FUNCTION_MASK);
  await raise(h, 1);
  t.equal(client.interruptCount(fds[1]!), 0, "masked: nothing on the eventfd");
  t.equal(await pba(h), 0b10, "PBA bit 1 pending");
  t.equal(device.pci.msix!.latched, 1);
  await h.cfgWrite(MSIX_CONTROL, 2, MsixControl.ENABLE);
  t.equal(await client.waitForInterrupt(fds[1]!), 1, "unmasking the function fires the pending vector");
  t.equal(await pba(h), 0, "PBA cleared");

  // Touch the table: per-vector masks now apply, and every entry is masked at reset.
  t.equal(await h.barRead32(MSIX_BAR, vectorControl(2)), MSIX_ENTRY_MASKED, "entries reset masked");
  await raise(h, 2);
  t.equal(client.interruptCount(fds[2]!), 0);
  t.equal(await pba(h), 0b100, "masked vector 2 pending");
  t.equal(device.irqs.counters(PciIrq.MSIX, 2).signalled, 0);
  await h.barWrite32(MSIX_BAR, vectorControl(2), 0);
  t.equal(await client.waitForInterrupt(fds[2]!), 1, "unmasking the entry fires it");
  t.equal(await pba(h), 0);
  await raise(h, 2);
  t.equal(await client.waitForInterrupt(fds[2]!), 1, "unmasked entry fires directly");

  // A pending vector withdrawn by the device does not fire on unmask.
  await raise(h, 3);
  t.equal(await pba(h), 0b1000);
  await h.barWrite32(0, Reg.LOWER, 3);
  t.equal(await pba(h), 0, "LOWER withdrew it");
  await h.barWrite32(MSIX_BAR, vectorControl(3), 0);
  await tick();
  t.equal(client.interruptCount(fds[3]!), 0, "nothing fired");

  // PBA is read-only; table fields keep what they may.
  await raise(h, 4);
  await client.regionWrite(MSIX_BAR, MSIX_PBA_OFFSET, le(0, 8));
  t.equal(await pba(h), 0b10000, "PBA writes ignored");
  await client.regionWrite(MSIX_BAR, 16 * 5, le(0xfee0_1003, 4));
  await client.regionWrite(MSIX_BAR, 16 * 5 + 8, le(0x4041, 4));
  await client.regionWrite(MSIX_BAR, vectorControl(5), le(0xffff_fffe, 4));
  t.same(
    [...(await client.regionRead(MSIX_BAR, 16 * 5, 16))],
    [0x00, 0x10, 0xe0, 0xfe, 0, 0, 0, 0, 0x41, 0x40, 0, 0, 0, 0, 0, 0],
    "address bits 1:0 and reserved control bits read 0; mask bit written 0",
  );
  t.equal(await h.barRead32(MSIX_BAR, vectorControl(6)), MSIX_ENTRY_MASKED, "other entries still masked");

  // Disabling MSI-X sends raises to INTx.
  await h.cfgWrite(MSIX_CONTROL, 2, 0);
  t.equal(await h.barRead32(0, Reg.IRQ_MODE), 1);
});

t.test("MSI: multiple message, per-vector mask and read-only pending bits", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  const { client, device } = h;
  const control = await h.cfgRead(MSI_CONTROL, 2);
  t.equal(control & MsiControl.MMC_MASK, 2 << 1, "Multiple Message Capable: 4");
  t.ok(control & MsiControl.ADDR64 && control & MsiControl.PER_VECTOR_MASK, "64-bit, maskable");
  t.equal((await client.getIrqInfo(PciIrq.MSI)).count, 4, "irq count matches the capability");
  await h.cfgWrite(MSI_CONTROL, 2, 0xffff);
  t.equal(
    await h.cfgRead(MSI_CONTROL, 2),
    control | MsiControl.ENABLE | MsiControl.MME_MASK,
    "RO fields kept",
  );
  await h.cfgWrite(MSI_CONTROL, 2, MsiControl.ENABLE | (2 << 4)); // 4 vectors allocated
  const fds = await client.enableInterrupts(PciIrq.MSI, 0, 4);
  t.equal(await h.barRead32(0, Reg.IRQ_MODE), 2, "MSI mode");

  await raise(h, 1);
  t.equal(await client.waitForInterrupt(fds[1]!), 1, "vector 1");
  await h.cfgWrite(MSI_MASK, 4, 0xffff_ffff);
  t.equal(await h.cfgRead(MSI_MASK, 4), 0xf, "only 4 mask bits implemented");
  await h.cfgWrite(MSI_MASK, 4, 0b0100);
  await raise(h, 2);
  t.equal(client.interruptCount(fds[2]!), 0, "masked");
  t.equal(await h.cfgRead(MSI_PENDING, 4), 0b0100, "pending bit 2");
  await h.cfgWrite(MSI_PENDING, 4, 0);
  t.equal(await h.cfgRead(MSI_PENDING, 4), 0b0100, "pending bits are read-only");
  t.equal(device.pci.msi!.latched, 1);
  await h.cfgWrite(MSI_MASK, 4, 0);
  t.equal(await client.waitForInterrupt(fds[2]!), 1, "unmask fires the pending vector");
  t.equal(await h.cfgRead(MSI_PENDING, 4), 0);
  t.equal(device.irqs.counters(PciIrq.MSI, 2).signalled, 1);

  // One vector allocated: every event goes to vector 0.
  await h.cfgWrite(MSI_CONTROL, 2, MsiControl.ENABLE);
  await raise(h, 3);
  t.equal(await client.waitForInterrupt(fds[0]!), 1, "vector 3 folded onto vector 0");
  t.equal(client.interruptCount(fds[3]!), 0);
});

t.test("MSI-X takes precedence over MSI; INTx only when neither is enabled", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  await h.cfgWrite(MSI_CONTROL, 2, MsiControl.ENABLE);
  await h.cfgWrite(MSIX_CONTROL, 2, MsixControl.ENABLE);
  t.equal(h.device.pci.irq.mode, "msix");
  await h.cfgWrite(MSIX_CONTROL, 2, 0);
  t.equal(h.device.pci.irq.mode, "msi");
  await h.cfgWrite(MSI_CONTROL, 2, 0);
  t.equal(h.device.pci.irq.mode, "intx");
});

t.test("INTx: a level held by raised vectors, Interrupt Disable and Interrupt Status", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  const { client, device } = h;
  const [fd] = await client.enableInterrupts(PciIrq.INTX, 0, 1);
  const status = async () => (await h.cfgRead(PciHeader.STATUS, 2)) & PciStatus.INTERRUPT;
  const unmask = () =>
    client.setIrqs({
      index: PciIrq.INTX,
      flags: IrqSetFlag.ACTION_UNMASK | IrqSetFlag.DATA_NONE,
      start: 0,
      count: 1,
    });

  await raise(h, 0);
  t.equal(await client.waitForInterrupt(fd!), 1, "asserting INTx fires");
  t.ok(await status(), "Status.Interrupt Status set");
  await raise(h, 5);
  await h.barWrite32(0, Reg.LOWER, 0);
  t.ok(await status(), "still held by vector 5");
  t.ok(device.irqs.isAsserted(PciIrq.INTX), "line asserted");
  await unmask();
  t.equal(await client.waitForInterrupt(fd!), 1, "unmask while asserted fires again (EOI semantics)");
  await h.barWrite32(0, Reg.LOWER, 5);
  t.notOk(await status(), "released");
  t.notOk(device.irqs.isAsserted(PciIrq.INTX));
  await unmask();
  await tick();
  t.equal(client.interruptCount(fd!), 0, "nothing fires once deasserted");

  // Interrupt Disable: the condition shows in Status, the line stays low until re-enabled.
  await h.cfgWrite(PciHeader.COMMAND, 2, PciCommand.INTX_DISABLE);
  await h.barWrite32(0, Reg.INTX, 1);
  t.ok(await status(), "Interrupt Status reflects the condition");
  t.notOk(device.irqs.isAsserted(PciIrq.INTX), "but INTx is not asserted");
  await tick();
  t.equal(client.interruptCount(fd!), 0);
  await h.cfgWrite(PciHeader.COMMAND, 2, 0);
  t.equal(await client.waitForInterrupt(fd!), 1, "clearing Interrupt Disable asserts");

  // Enabling MSI takes the function off INTx.
  await h.cfgWrite(MSI_CONTROL, 2, MsiControl.ENABLE);
  t.notOk(device.irqs.isAsserted(PciIrq.INTX), "MSI enabled: INTx deasserted");
  t.notOk(await status());
  await h.cfgWrite(MSI_CONTROL, 2, 0);
  t.ok(device.irqs.isAsserted(PciIrq.INTX), "back on INTx: the held condition asserts again");
  await h.barWrite32(0, Reg.INTX, 0);
  t.notOk(device.irqs.isAsserted(PciIrq.INTX));
});

t.test("ERR and REQ notifiers", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  const [err] = await h.client.enableInterrupts(PciIrq.ERR, 0, 1);
  const [req] = await h.client.enableInterrupts(PciIrq.REQ, 0, 1);
  await h.barWrite32(0, Reg.ERR, 1);
  t.equal(await h.client.waitForInterrupt(err!), 1, "ERR signalled");
  await h.barWrite32(0, Reg.REQ, 1);
  t.equal(await h.client.waitForInterrupt(req!), 1, "REQ signalled");
  t.equal(h.device.irqs.counters(PciIrq.ERR, 0).signalled, 1);
});

t.test("a function without a pin or MSI drops raises and counts them", async (t) => {
  const { definePciDevice } = await import("../../src/index.ts");
  const def = definePciDevice({
    name: "silent",
    summary: "no interrupts",
    ids: { vendor: 0x1234, device: 2, classCode: 0xff0000 },
    bars: [{ kind: "memory", size: 16 }],
    create: (ctx) => ({ bars: { 0: { write: () => ctx.irq.raise(0), read: () => 0 } } }),
  });
  const h = await pciHarness(def);
  t.teardown(() => h.close());
  t.equal(await h.cfgRead(PciHeader.INTERRUPT_PIN, 1), 0, "no pin");
  t.equal((await h.client.getIrqInfo(PciIrq.INTX)).count, 0, "INTx count 0");
  t.equal(h.device.pci.irq.mode, "none");
  await h.barWrite32(0, 0, 1);
  t.equal(h.device.pci.irq.dropped, 1);
  t.throws(() => h.device.pci.irq.raise(1), RangeError, "vector beyond the function's");
});
