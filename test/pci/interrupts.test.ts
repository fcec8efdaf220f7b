// Interrupts of a PCI function. Routing: MSI-X (function mask, per-vector masks, PBA), MSI
// (multiple message, per-vector mask and pending bits), INTx (level, Interrupt Disable, Interrupt
// Status), ERR and REQ — raised through pci-testdev's registers, observed on the client's eventfds
// and the IrqController's per-vector counters. Then every DEVICE_SET_IRQS form QEMU's
// vfio-user-pci sends and the errno of each invalid form.
import t from "tap";
import { MSIX_PBA_OFFSET, MSIX_VECTORS, Reg } from "../../devices/pci-testdev/index.ts";
import { native } from "../../native/index.ts";
import {
  definePciDevice,
  IrqInfoFlag,
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
import { Errno, errnoOf, le, leNumber, type PciHarness, pciHarness, tick } from "../fixtures/pci/harness.ts";

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

const F = IrqSetFlag;
const TRIGGER_EVENTFD = F.ACTION_TRIGGER | F.DATA_EVENTFD;
const TRIGGER_NONE = F.ACTION_TRIGGER | F.DATA_NONE;

function set(
  h: PciHarness,
  index: number,
  flags: number,
  start: number,
  count: number,
  fds: number[] = [],
  data?: Uint8Array,
) {
  return h.client.setIrqs({ index, flags, start, count, fds, data });
}

t.test("GET_IRQ_INFO: five indices with QEMU-compatible flags", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  const info = await Promise.all([0, 1, 2, 3, 4].map((i) => h.client.getIrqInfo(i)));
  t.same(
    info.map((i) => i.count),
    [1, 4, MSIX_VECTORS, 1, 1],
  );
  t.equal(info[0]!.flags, IrqInfoFlag.EVENTFD | IrqInfoFlag.MASKABLE | IrqInfoFlag.AUTOMASKED, "INTx");
  t.equal(info[2]!.flags & IrqInfoFlag.NORESIZE, 0, "MSI-X without NORESIZE");
  t.equal(info[3]!.flags, IrqInfoFlag.EVENTFD, "ERR");
  t.equal(await errnoOf(h.client.getIrqInfo(5)), Errno.EINVAL, "index 5 does not exist");
});

t.test("INTx as QEMU with KVM wires it: trigger fd, MASK, resample fd, UNMASK", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  const trigger = h.client.createEventfd();
  const resample = h.client.createEventfd();
  await set(h, PciIrq.INTX, TRIGGER_EVENTFD, 0, 1, [trigger]);
  await set(h, PciIrq.INTX, F.ACTION_MASK | F.DATA_NONE, 0, 1);
  await set(h, PciIrq.INTX, F.ACTION_UNMASK | F.DATA_EVENTFD, 0, 1, [resample]);
  await set(h, PciIrq.INTX, F.ACTION_UNMASK | F.DATA_NONE, 0, 1);
  t.ok(h.device.irqs.isEnabled(PciIrq.INTX));

  await h.barWrite32(0, Reg.RAISE, 0);
  t.equal(await h.client.waitForInterrupt(trigger), 1, "asserted: the trigger fd fires");
  t.ok(h.device.irqs.counters(PciIrq.INTX, 0).masked, "automasked after firing");
  native.eventfdWrite(resample, 1); // the guest EOIs; KVM signals the resample fd
  t.equal(await h.client.waitForInterrupt(trigger), 1, "still asserted: fires again on resample");
  await h.barWrite32(0, Reg.LOWER, 0);
  native.eventfdWrite(resample, 1);
  await tick(20);
  t.equal(h.client.interruptCount(trigger), 0, "deasserted: the resample only unmasks");
  t.notOk(h.device.irqs.counters(PciIrq.INTX, 0).masked);

  // MASK|NONE holds a new assertion back until UNMASK|NONE.
  await set(h, PciIrq.INTX, F.ACTION_MASK | F.DATA_NONE, 0, 1);
  await h.barWrite32(0, Reg.RAISE, 0);
  await tick();
  t.equal(h.client.interruptCount(trigger), 0, "masked");
  await set(h, PciIrq.INTX, F.ACTION_UNMASK | F.DATA_NONE, 0, 1);
  t.equal(await h.client.waitForInterrupt(trigger), 1, "UNMASK fires the held level");

  await set(h, PciIrq.INTX, TRIGGER_NONE, 0, 0); // disable
  t.notOk(h.device.irqs.isEnabled(PciIrq.INTX));
  t.same(h.device.irqs.heldFds(), [], "the trigger and resample fds are closed");
});

t.test("MSI as QEMU enables it: chunks of bound fds and unbound runs, then disable", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  await h.cfgWrite(0x4a, 2, MsiControl.ENABLE | (2 << 4));
  const a = h.client.createEventfd();
  const b = h.client.createEventfd();
  await set(h, PciIrq.MSI, TRIGGER_EVENTFD, 0, 2, [a, b]);
  await set(h, PciIrq.MSI, TRIGGER_EVENTFD, 2, 2); // "count 2, no fds": vectors 2-3 unused
  t.ok(h.device.irqs.counters(PciIrq.MSI, 1).bound);
  t.notOk(h.device.irqs.counters(PciIrq.MSI, 2).bound);
  await h.barWrite32(0, Reg.RAISE, 1);
  t.equal(await h.client.waitForInterrupt(b), 1);
  await h.barWrite32(0, Reg.RAISE, 3);
  t.equal(h.device.irqs.counters(PciIrq.MSI, 3).dropped, 1, "an unbound vector is dropped and counted");
  await set(h, PciIrq.MSI, TRIGGER_NONE, 0, 0);
  t.notOk(h.device.irqs.isEnabled(PciIrq.MSI));
  t.notOk(h.device.irqs.counters(PciIrq.MSI, 0).bound, "disable unbinds every vector");
});

t.test("MSI-X as QEMU enables it: 'count 1, no fd', then one vector at a time", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  await h.cfgWrite(0x62, 2, MsixControl.ENABLE);
  await set(h, PciIrq.MSIX, TRIGGER_EVENTFD, 0, 1); // MSI-X on, no vectors
  t.ok(h.device.irqs.isEnabled(PciIrq.MSIX), "the index is enabled");
  t.notOk(h.device.irqs.counters(PciIrq.MSIX, 0).bound);
  await h.barWrite32(0, Reg.RAISE, 0);
  t.equal(h.device.irqs.counters(PciIrq.MSIX, 0).dropped, 1, "no fd yet: dropped");
  const v5 = h.client.createEventfd();
  await set(h, PciIrq.MSIX, TRIGGER_EVENTFD, 5, 1, [v5]);
  await h.barWrite32(0, Reg.RAISE, 5);
  t.equal(await h.client.waitForInterrupt(v5), 1, "vector 5 bound alone");
  const again = h.client.createEventfd();
  await set(h, PciIrq.MSIX, TRIGGER_EVENTFD, 5, 1, [again]); // QEMU re-binds on mask
  await h.barWrite32(0, Reg.RAISE, 5);
  t.equal(await h.client.waitForInterrupt(again), 1, "the newest fd gets the signal");
  t.equal(h.client.interruptCount(v5), 0);
  // Loopback forms: TRIGGER|NONE count n fires, TRIGGER|BOOL fires where 1.
  await set(h, PciIrq.MSIX, TRIGGER_NONE, 5, 1);
  t.equal(await h.client.waitForInterrupt(again), 1, "TRIGGER|NONE loopback");
  await set(h, PciIrq.MSIX, F.ACTION_TRIGGER | F.DATA_BOOL, 4, 2, [], new Uint8Array([0, 1]));
  t.equal(await h.client.waitForInterrupt(again), 1, "TRIGGER|BOOL loopback");
  await set(h, PciIrq.MSIX, TRIGGER_NONE, 0, 0);
  t.notOk(h.device.irqs.isEnabled(PciIrq.MSIX));
  t.same(h.device.irqs.heldFds(), [], "every vector fd closed");
});

t.test("ERR and REQ accept one trigger eventfd", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  for (const index of [PciIrq.ERR, PciIrq.REQ]) {
    await set(h, index, TRIGGER_EVENTFD, 0, 1, [h.client.createEventfd()]);
    t.ok(h.device.irqs.counters(index, 0).bound, `index ${index} bound`);
    await set(h, index, TRIGGER_NONE, 0, 0);
    t.notOk(h.device.irqs.counters(index, 0).bound, `index ${index} released`);
  }
});

t.test("invalid SET_IRQS forms get EINVAL and leak no fd", async (t) => {
  const h = await pciHarness();
  t.teardown(() => h.close());
  const fd = () => h.client.createEventfd();
  const memfd = native.memfdCreate("not-eventfd", 4096, true);
  t.teardown(() => native.close(memfd));
  const cases: Array<[string, Promise<void>]> = [
    ["ERR with MASK", set(h, PciIrq.ERR, F.ACTION_MASK | F.DATA_NONE, 0, 1)],
    ["ERR with UNMASK and an fd", set(h, PciIrq.ERR, F.ACTION_UNMASK | F.DATA_EVENTFD, 0, 1, [fd()])],
    ["REQ with MASK", set(h, PciIrq.REQ, F.ACTION_MASK | F.DATA_NONE, 0, 1)],
    ["ERR count 2", set(h, PciIrq.ERR, TRIGGER_EVENTFD, 0, 2, [fd(), fd()])],
    ["MSI-X count over range", set(h, PciIrq.MSIX, TRIGGER_EVENTFD, 7, 2, [fd(), fd()])],
    ["MSI-X start past the end", set(h, PciIrq.MSIX, TRIGGER_EVENTFD, MSIX_VECTORS, 1)],
    ["start + count wraps 32 bits", set(h, PciIrq.MSIX, TRIGGER_EVENTFD, 0xffff_ffff, 2)],
    ["INTx count 2", set(h, PciIrq.INTX, TRIGGER_EVENTFD, 0, 2, [fd(), fd()])],
    ["fds without DATA_EVENTFD", set(h, PciIrq.MSIX, TRIGGER_NONE, 0, 1, [fd()])],
    [
      "fds with DATA_BOOL",
      set(h, PciIrq.MSIX, F.ACTION_TRIGGER | F.DATA_BOOL, 0, 1, [fd()], new Uint8Array([1])),
    ],
    ["fewer fds than count", set(h, PciIrq.MSI, TRIGGER_EVENTFD, 0, 2, [fd()])],
    ["count 0 with start 1", set(h, PciIrq.MSI, TRIGGER_NONE, 1, 0)],
    ["count 0 with MASK", set(h, PciIrq.INTX, F.ACTION_MASK | F.DATA_NONE, 0, 0)],
    ["count 0 with EVENTFD", set(h, PciIrq.MSIX, TRIGGER_EVENTFD, 0, 0)],
    ["MSI is not maskable by SET_IRQS", set(h, PciIrq.MSI, F.ACTION_MASK | F.DATA_NONE, 0, 1)],
    ["two actions", set(h, PciIrq.MSIX, F.ACTION_TRIGGER | F.ACTION_MASK | F.DATA_NONE, 0, 1)],
    ["no data type", set(h, PciIrq.MSIX, F.ACTION_TRIGGER, 0, 1)],
    ["index 5", set(h, 5, TRIGGER_NONE, 0, 0)],
    ["a non-eventfd fd", set(h, PciIrq.MSIX, TRIGGER_EVENTFD, 0, 1, [memfd])],
  ];
  for (const [what, p] of cases) t.equal(await errnoOf(p), Errno.EINVAL, what);
  t.same(h.device.irqs.heldFds(), [], "the controller kept none of the fds");
  t.notOk(h.device.irqs.isEnabled(PciIrq.MSIX), "no failed call enabled an index");
});

t.test("a function without INTx refuses an INTx trigger but accepts QEMU's disable", async (t) => {
  const def = definePciDevice({
    name: "no-intx",
    summary: "MSI only",
    ids: { vendor: 0x1234, device: 3, classCode: 0xff0000 },
    capabilities: { msi: { vectors: 1 } },
    create: () => ({}),
  });
  const h = await pciHarness(def);
  t.teardown(() => h.close());
  t.equal(
    await errnoOf(set(h, PciIrq.INTX, TRIGGER_EVENTFD, 0, 1, [h.client.createEventfd()])),
    Errno.EINVAL,
  );
  await set(h, PciIrq.INTX, TRIGGER_NONE, 0, 0);
  t.equal(await errnoOf(set(h, PciIrq.MSIX, TRIGGER_EVENTFD, 0, 1)), Errno.EINVAL, "no MSI-X: count 0");
  t.pass("disable of an unused index succeeds");
});
