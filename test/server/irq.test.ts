// DEVICE_GET_IRQ_INFO and DEVICE_SET_IRQS through the client, with eventfds.
import t from "tap";
import { Reg } from "../../devices/scratchpad/index.ts";
import { native } from "../../native/index.ts";
import { Command, encodeIrqInfo, encodeSetIrqs, IrqInfoFlag, IrqSetFlag } from "../../src/index.ts";
import { openFdCount } from "../../src/util/fds.ts";
import { memoryHarness, rawRequest, replyErrno, settle, socketHarness } from "../helpers/harness.ts";

const EVENTFD_TRIGGER = IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER;

t.test("DEVICE_GET_IRQ_INFO reports counts and flags; bad requests get EINVAL", async (t) => {
  const h = await memoryHarness();
  const edge = await h.client.getIrqInfo(0);
  t.equal(edge.count, 4);
  t.equal(edge.flags, IrqInfoFlag.EVENTFD | IrqInfoFlag.MASKABLE);
  const level = await h.client.getIrqInfo(1);
  t.equal(level.flags, IrqInfoFlag.EVENTFD | IrqInfoFlag.MASKABLE | IrqInfoFlag.AUTOMASKED);
  const ask = (argsz: number, index: number) =>
    rawRequest(h.client, Command.DEVICE_GET_IRQ_INFO, encodeIrqInfo({ argsz, flags: 0, index, count: 0 }));
  t.equal(replyErrno(await ask(16, 2)), 22, "no such index");
  t.equal(replyErrno(await ask(12, 0)), 22, "argsz too small");
  await h.close();
});

t.test(
  "over a real socket, SET_IRQS passes eventfds and the client sees the device's interrupt",
  async (t) => {
    const h = await socketHarness();
    const client = await h.connect();
    const fds = await client.enableInterrupts(0, 0, 4);
    await client.regionWrite32(0, Reg.RAISE, 2);
    t.equal(await client.waitForInterrupt(fds[2]!), 1);
    t.equal(client.interruptCount(fds[0]!), 0, "other vectors stay quiet");
    t.equal(h.endpoint.device.irqs.counters(0, 2).signalled, 1, "per-vector counter");
    client.close();
    await h.close();
  },
);

t.test("masking latches an edge interrupt until unmask", async (t) => {
  const h = await memoryHarness();
  const [fd] = await h.client.enableInterrupts(0, 1, 1);
  await h.client.setIrqs({
    index: 0,
    flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_MASK,
    start: 1,
    count: 1,
  });
  await h.client.regionWrite32(0, Reg.RAISE, 1);
  t.equal(h.client.interruptCount(fd!), 0, "masked: nothing");
  t.equal(h.session.device.irqs.counters(0, 1).pending, true);
  await h.client.setIrqs({
    index: 0,
    flags: IrqSetFlag.DATA_BOOL | IrqSetFlag.ACTION_UNMASK,
    start: 0,
    count: 2,
    data: new Uint8Array([0, 1]),
  });
  t.equal(await h.client.waitForInterrupt(fd!), 1, "fires on unmask");
  await h.close();
});

t.test("a level interrupt is automasked and fires again on unmask while still asserted", async (t) => {
  const h = await memoryHarness();
  const [fd] = await h.client.enableInterrupts(1, 0, 1);
  await h.client.regionWrite32(0, Reg.LEVEL, 1);
  t.equal(await h.client.waitForInterrupt(fd!), 1);
  await h.client.setIrqs({
    index: 1,
    flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_UNMASK,
    start: 0,
    count: 1,
  });
  t.equal(await h.client.waitForInterrupt(fd!), 1, "re-fired: still asserted");
  await h.client.regionWrite32(0, Reg.LEVEL, 0);
  await h.client.setIrqs({
    index: 1,
    flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_UNMASK,
    start: 0,
    count: 1,
  });
  t.equal(h.client.interruptCount(fd!), 0, "deasserted: no more");
  // A resample eventfd unmasks when the client signals it.
  await h.client.regionWrite32(0, Reg.LEVEL, 1);
  t.equal(await h.client.waitForInterrupt(fd!), 1);
  const resample = h.client.createEventfd();
  await h.client.setIrqs({
    index: 1,
    flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_UNMASK,
    start: 0,
    count: 1,
    fds: [resample],
  });
  native.eventfdWrite(resample, 1);
  t.equal(await h.client.waitForInterrupt(fd!), 1, "resample fd acts as unmask");
  await h.close();
});

t.test("loopback triggers (NONE and BOOL) fire bound vectors", async (t) => {
  const h = await memoryHarness();
  const fds = await h.client.enableInterrupts(0, 0, 4);
  await h.client.setIrqs({
    index: 0,
    flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER,
    start: 0,
    count: 2,
  });
  t.equal(h.client.interruptCount(fds[0]!), 1);
  t.equal(h.client.interruptCount(fds[1]!), 1);
  await h.client.setIrqs({
    index: 0,
    flags: IrqSetFlag.DATA_BOOL | IrqSetFlag.ACTION_TRIGGER,
    start: 2,
    count: 2,
    data: new Uint8Array([0, 1]),
  });
  t.equal(h.client.interruptCount(fds[2]!), 0);
  t.equal(h.client.interruptCount(fds[3]!), 1);
  await h.close();
});

t.test("de-assigning and disabling release the server's fds", async (t) => {
  const h = await memoryHarness();
  const before = openFdCount();
  await h.client.enableInterrupts(0, 0, 4);
  const held = h.session.device.irqs.heldFds().length;
  t.equal(held, 4);
  await h.client.setIrqs({ index: 0, flags: EVENTFD_TRIGGER, start: 2, count: 2 }); // a run with no fds
  t.equal(h.session.device.irqs.heldFds().length, 2, "vectors 2-3 unbound");
  await h.client.setIrqs({
    index: 0,
    flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER,
    start: 0,
    count: 0,
  });
  t.equal(h.session.device.irqs.heldFds().length, 0, "index disabled");
  t.equal(h.session.device.irqs.isEnabled(0), false);
  await settle();
  t.equal(openFdCount() - before, 4, "only the client's own four eventfds remain");
  await h.close();
});

t.test("invalid SET_IRQS forms get EINVAL and their fds are closed", async (t) => {
  const h = await memoryHarness();
  const before = openFdCount();
  const send = (
    flags: number,
    index: number,
    start: number,
    count: number,
    fds: number[] = [],
    data: Uint8Array | null = null,
  ) =>
    rawRequest(
      h.client,
      Command.DEVICE_SET_IRQS,
      encodeSetIrqs({ argsz: 20 + (data?.length ?? 0), flags, index, start, count, data }),
      { fds },
    );
  const efd = native.eventfd(0);
  t.equal(replyErrno(await send(EVENTFD_TRIGGER, 2, 0, 1, [efd])), 22, "no such index");
  t.equal(replyErrno(await send(EVENTFD_TRIGGER, 0, 3, 2, [efd, efd])), 22, "range past the vectors");
  t.equal(replyErrno(await send(EVENTFD_TRIGGER, 0, 0, 2, [efd])), 22, "fd count differs from count");
  t.equal(
    replyErrno(await send(IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER, 0, 0, 1, [efd])),
    22,
    "fds without DATA_EVENTFD",
  );
  t.equal(
    replyErrno(await send(IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_MASK, 0, 1, 0)),
    22,
    "count 0 with MASK",
  );
  t.equal(
    replyErrno(await send(IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER, 0, 1, 0)),
    22,
    "count 0 with start 1",
  );
  t.equal(
    replyErrno(await send(IrqSetFlag.DATA_NONE | IrqSetFlag.DATA_BOOL | IrqSetFlag.ACTION_TRIGGER, 0, 0, 1)),
    22,
    "two data types",
  );
  t.equal(replyErrno(await send(IrqSetFlag.DATA_NONE, 0, 0, 1)), 22, "no action");
  const file = native.memfdCreate("not-an-eventfd", 4096, false);
  t.equal(replyErrno(await send(EVENTFD_TRIGGER, 0, 0, 1, [file])), 22, "a memfd is not an eventfd");
  native.close(file);
  native.close(efd);
  await settle();
  t.equal(openFdCount(), before, "nothing kept");
  await h.close();
});
