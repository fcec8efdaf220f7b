// nvme driven by the TypeScript client: INTx as a level with the INTMS/INTMC mask registers, a
// Function Level Reset through the PCI Express capability (registers and queues back to
// power-on, the image kept, the controller usable again), and Abort / Asynchronous Event Request
// semantics (an Abort that cannot abort completes with DW0 bit 0 = 1, "not aborted"; AERs stay
// outstanding: this controller generates no events, and the specification sets no timeout on an
// AER).
import { readFileSync } from "node:fs";
import t, { type Test } from "tap";
import { Status } from "../../devices/nvme/spec.ts";
import {
  ExpressCap,
  ExpressDevCtl,
  IrqSetFlag,
  PciCommand,
  PciHeader,
  PciIrq,
  PciRegion,
} from "../../src/index.ts";
import { Layout, NvmeHost } from "./nvme-host.ts";

const tick = (ms = 10) => new Promise((r) => setTimeout(r, ms));

const ready = (t: Test, options: Record<string, string> = {}) => NvmeHost.ready(t, options);

/** Submit a Read on queue 1 without the host's reaper: its completion stays unconsumed. */
async function submitRaw(h: NvmeHost, cid: number): Promise<void> {
  const q = h.queues.get(1)!;
  h.mem.bytes.set(
    h.encode({ opc: 0x02, nsid: 1, prp1: h.iova(Layout.DATA), cdw12: 0 }, cid),
    q.sqOff + q.sqTail * 64,
  );
  q.sqTail = (q.sqTail + 1) % q.sqSize;
  await h.w32(0x1000 + 2 * h.stride, q.sqTail);
}

/** Wait until queue 1's CQ holds a new entry (phase), then return its status word. */
async function waitCqe(h: NvmeHost): Promise<number> {
  const q = h.queues.get(1)!;
  for (let i = 0; i < 200; i++) {
    const st = h.view.getUint16(q.cqOff + q.cqHead * 16 + 14, true);
    if ((st & 1) === q.phase) return st;
    await tick(2);
  }
  throw new Error("no completion");
}

/** Consume one entry of queue 1's CQ and write the head doorbell. */
async function consume(h: NvmeHost): Promise<void> {
  const q = h.queues.get(1)!;
  q.cqHead = (q.cqHead + 1) % q.cqSize;
  if (q.cqHead === 0) q.phase ^= 1;
  await h.w32(0x1000 + 3 * h.stride, q.cqHead);
}

function unmaskIntx(h: NvmeHost): Promise<void> {
  return h.client.setIrqs({
    index: PciIrq.INTX,
    flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_UNMASK,
    start: 0,
    count: 1,
  });
}

t.test("INTx: a level while completions are unconsumed; INTMS masks it, INTMC raises it again", async (t) => {
  const h = await ready(t);
  const [fd] = await h.client.enableInterrupts(PciIrq.INTX, 0, 1);
  await h.createQueues(1, 16, { iv: 0, ien: true });
  await tick();
  h.client.interruptCount(fd!);
  await unmaskIntx(h);
  const asserted = () => h.device.irqs.isAsserted(PciIrq.INTX, 0);
  t.notOk(asserted(), "low with every completion consumed");

  await submitRaw(h, 0x100);
  t.equal((await waitCqe(h)) >> 1, 0, "success");
  t.ok((await h.client.waitForInterrupt(fd!)) >= 1, "INTx fired");
  t.ok(asserted(), "held while the entry is unconsumed");

  await h.w32(0x0c, 1); // INTMS: mask vector 0
  t.equal(await h.r32(0x0c), 1, "INTMS reads the mask");
  t.notOk(asserted(), "masked: the line drops");
  await h.w32(0x10, 1); // INTMC: unmask
  t.equal(await h.r32(0x0c), 0, "INTMC cleared the mask");
  t.ok(asserted(), "unmasked with the entry still there: raised again");

  await consume(h);
  await tick();
  t.notOk(asserted(), "the head doorbell consumed it: low");

  // Masked while the completion arrives: nothing until unmasked.
  await h.w32(0x0c, 1);
  await unmaskIntx(h);
  h.client.interruptCount(fd!);
  await submitRaw(h, 0x101);
  await waitCqe(h);
  await tick();
  t.notOk(asserted(), "masked: a completion does not assert");
  t.equal(h.client.interruptCount(fd!), 0, "and signals nothing");
  await h.w32(0x10, 1);
  t.ok(asserted(), "INTMC: the pending completion asserts it");
  t.ok((await h.client.waitForInterrupt(fd!)) >= 1, "and signals");
  await consume(h);
  await tick();
  t.notOk(asserted(), "low after consuming");
});

t.test(
  "FLR through the Express capability: controller back to power-on, image kept, usable again",
  async (t) => {
    const h = await ready(t);
    await h.createQueues(1, 16);
    const data = new Uint8Array(4096).map((_, i) => (i * 13 + 5) & 0xff);
    h.mem.bytes.set(data, Layout.DATA);
    t.equal((await h.rw(1, true, 64, 8, Layout.DATA)).status, 0, "write before FLR");
    // Find the PCI Express capability (ID 0x10).
    let ptr = (await h.client.regionRead(PciRegion.CONFIG, 0x34, 1))[0]!;
    while (ptr) {
      const hdr = await h.client.regionRead(PciRegion.CONFIG, ptr, 2);
      if (hdr[0] === 0x10) break;
      ptr = hdr[1]!;
    }
    t.ok(ptr, "Express capability");
    const devctl = ptr + ExpressCap.DEVCTL;
    const before = h.device.behaviour.controller.generation;
    const cur = (await h.client.regionRead(PciRegion.CONFIG, devctl, 2)) as Uint8Array;
    const v = (cur[0]! | (cur[1]! << 8) | ExpressDevCtl.BCR_FLR) & 0xffff;
    await h.client.regionWrite(PciRegion.CONFIG, devctl, Uint8Array.of(v & 0xff, v >> 8));
    await tick();
    t.equal(h.device.pci.resets.flr, 1, "an FLR");
    t.ok(h.device.behaviour.controller.generation > before, "the controller reset");
    // Config space is at power-on: memory decoding and bus mastering are off again.
    const cmd = await h.client.regionRead(PciRegion.CONFIG, PciHeader.COMMAND, 2);
    t.equal(cmd[0]! & (PciCommand.MEMORY | PciCommand.MASTER), 0, "Command register cleared");
    await h.client.regionWrite(
      PciRegion.CONFIG,
      PciHeader.COMMAND,
      Uint8Array.of(PciCommand.MEMORY | PciCommand.MASTER, 0),
    );
    t.equal(await h.r32(0x14), 0, "CC 0");
    t.equal((await h.r32(0x1c)) & 1, 0, "CSTS.RDY 0");
    t.equal(await h.r32(0x24), 0, "AQA 0");
    t.equal(await h.r64(0x28), 0n, "ASQ 0");
    t.equal(await h.r64(0x30), 0n, "ACQ 0");
    t.equal(h.device.behaviour.controller.sqs.size, 0, "no queues");
    await h.w32(0x1000 + 2 * h.stride, 3); // a doorbell of the old I/O queue: ignored
    h.abandon();
    // Usable again: enable, queues, the data written before the FLR reads back.
    await h.enable();
    await h.createQueues(1, 16);
    t.equal((await h.rw(1, false, 64, 8, Layout.DATA + 0x10000)).status, 0, "read after FLR");
    t.same(h.mem.bytes.subarray(Layout.DATA + 0x10000, Layout.DATA + 0x11000), data, "image kept");
    t.same(readFileSync(h.disk).subarray(64 * 512, 72 * 512), Buffer.from(data), "in the file");
  },
);

t.test("Abort cannot abort: DW0 bit 0 = 1; AERs stay outstanding until reset", async (t) => {
  const h = await ready(t);
  // Two AERs, held: no event source.
  const aer1 = h.admin({ opc: 0x0c });
  const aer2 = h.admin({ opc: 0x0c });
  let aersDone = 0;
  void aer1.then(() => aersDone++);
  void aer2.then(() => aersDone++);
  await tick(20);
  const aerCids = h.device.behaviour.controller.aers.slice();
  t.equal(aerCids.length, 2, "two AERs held");
  // Abort naming a held AER (SQID 0, its CID): best effort, not aborted; the AER stays.
  let c = await h.admin({ opc: 0x08, cdw10: 0 | (aerCids[0]! << 16) });
  t.same([c.status, c.dw0 & 1], [Status.SUCCESS, 1], "Abort of an AER: success, not aborted");
  // Abort naming an I/O command that already completed, and one that never existed.
  await h.createQueues(1, 16);
  const done = await h.rw(1, false, 0, 1, Layout.DATA);
  c = await h.admin({ opc: 0x08, cdw10: 1 | (done.cid << 16) });
  t.same([c.status, c.dw0 & 1], [Status.SUCCESS, 1], "Abort of a completed command: not aborted");
  c = await h.admin({ opc: 0x08, cdw10: 1 | (0xbeef << 16) });
  t.same([c.status, c.dw0 & 1], [Status.SUCCESS, 1], "Abort of an unknown command: not aborted");
  await tick(20);
  t.equal(aersDone, 0, "the AERs are still outstanding");
  t.equal(h.device.behaviour.controller.aers.length, 2);
  // A controller reset drops them (the host abandons its waiters).
  await h.w32(0x14, 0);
  await h.waitCsts(1, 0);
  t.equal(h.device.behaviour.controller.aers.length, 0, "dropped at reset");
  h.abandon();
});
