// Every DEVICE_SET_IRQS form QEMU's vfio-user-pci sends for a PCI function (protocol reference
// §5.2, §5.4, §5.7), and the errno of each invalid form (§3.7, G12, G16).
import t from "tap";
import { MSIX_VECTORS, Reg } from "../../devices/pci-testdev/index.ts";
import { native } from "../../native/index.ts";
import { IrqInfoFlag, IrqSetFlag, MsiControl, MsixControl, PciIrq } from "../../src/index.ts";
import { EINVAL, errnoOf, type PciHarness, pciHarness, tick } from "../fixtures/pci/harness.ts";

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
  t.equal(await errnoOf(h.client.getIrqInfo(5)), EINVAL, "index 5 does not exist");
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
  for (const [what, p] of cases) t.equal(await errnoOf(p), EINVAL, what);
  t.same(h.device.irqs.heldFds(), [], "the controller kept none of the fds");
  t.notOk(h.device.irqs.isEnabled(PciIrq.MSIX), "no failed call enabled an index");
});

t.test("a function without INTx refuses an INTx trigger but accepts QEMU's disable", async (t) => {
  const { definePciDevice } = await import("../../src/index.ts");
  const def = definePciDevice({
    name: "no-intx",
    summary: "MSI only",
    ids: { vendor: 0x1234, device: 3, classCode: 0xff0000 },
    capabilities: { msi: { vectors: 1 } },
    create: () => ({}),
  });
  const h = await pciHarness(def);
  t.teardown(() => h.close());
  t.equal(await errnoOf(set(h, PciIrq.INTX, TRIGGER_EVENTFD, 0, 1, [h.client.createEventfd()])), EINVAL);
  await set(h, PciIrq.INTX, TRIGGER_NONE, 0, 0);
  t.equal(await errnoOf(set(h, PciIrq.MSIX, TRIGGER_EVENTFD, 0, 1)), EINVAL, "no MSI-X: count 0");
  t.pass("disable of an unused index succeeds");
});
