// edu (QEMU's educational device) through the TypeScript client over the in-memory pair: what it
// reports, its registers (identification, liveness, factorial, interrupt status/raise/ack), INTx
// and MSI, and the DMA engine between client memory and its 4 KiB buffer with fd-backed and
// message-backed (DMA_READ/DMA_WRITE) client memory: both directions, the completion interrupt,
// the error bit for every fault the IOMMU model reports (Bus Master off, unmapped, read-only,
// outside the buffer), the DMA mask, that DMA starts only after the register write's reply, and
// reset.

import t from "tap";
import {
  DEFAULT_DMA_MASK,
  DMA_BUFFER,
  DMA_BUFFER_SIZE,
  DmaCmd,
  EDU_BAR,
  EDU_BAR_SIZE,
  EDU_ID,
  EDU_IDS,
  type EduBehaviour,
  edu,
  factorial32,
  IrqCause,
  Reg,
  Status,
} from "../../devices/edu/index.ts";
import { Errno } from "../../protocol/index.ts";
import {
  type ClientMemory,
  createMemoryPair,
  DeviceDma,
  DmaMapFlag,
  IrqSetFlag,
  MemorySink,
  MsiControl,
  PciCommand,
  PciDevice,
  PciHeader,
  PciIrq,
  PciRegion,
  SinkLogger,
  serveConnection,
  VfioUserClient,
} from "../../src/index.ts";
import { ManualClock } from "../helpers/manual-clock.ts";

interface Harness {
  client: VfioUserClient;
  device: PciDevice<EduBehaviour>;
  dma: DeviceDma;
  logs: MemorySink;
  clock: ManualClock | null;
  r32(offset: number): Promise<number>;
  w32(offset: number, value: number): Promise<void>;
  r64(offset: number): Promise<bigint>;
  w64(offset: number, value: bigint): Promise<void>;
  cfg16(offset: number): Promise<number>;
  cfgWrite16(offset: number, value: number): Promise<void>;
  /** Let the device's work run: the manual clock's jobs, or the real clock's. */
  settle(): Promise<void>;
  close(): Promise<void>;
}

async function serve(opts: { manual?: boolean; options?: Record<string, string> } = {}): Promise<Harness> {
  const logs = new MemorySink();
  const log = new SinkLogger(logs, "debug");
  const dma = new DeviceDma(log);
  const clock = opts.manual ? new ManualClock() : null;
  let device: PciDevice<EduBehaviour> | undefined;
  const [a, b] = createMemoryPair();
  const session = serveConnection(
    b,
    (d, l) => {
      device = new PciDevice(edu, {
        dma: d,
        log: l,
        options: { "dma-mask": "0xfffffff", ...(opts.options ?? {}) },
        ...(clock ? { clock } : {}),
      });
      return device;
    },
    { log, dma },
  );
  const client = await VfioUserClient.over(a);
  const h: Harness = {
    client,
    device: device!,
    dma,
    logs,
    clock,
    r32: (offset) => client.regionRead32(EDU_BAR, offset),
    w32: (offset, value) => client.regionWrite32(EDU_BAR, offset, value),
    async r64(offset) {
      const d = await client.regionRead(EDU_BAR, offset, 8);
      return new DataView(d.buffer, d.byteOffset, 8).getBigUint64(0, true);
    },
    async w64(offset, value) {
      const d = new Uint8Array(8);
      new DataView(d.buffer).setBigUint64(0, value, true);
      await client.regionWrite(EDU_BAR, offset, d);
    },
    async cfg16(offset) {
      const d = await client.regionRead(PciRegion.CONFIG, offset, 2);
      return d[0]! | (d[1]! << 8);
    },
    async cfgWrite16(offset, value) {
      await client.regionWrite(PciRegion.CONFIG, offset, new Uint8Array([value & 0xff, value >> 8]));
    },
    async settle() {
      const e = device!.behaviour;
      for (let i = 0; i < 10; i++) {
        clock?.run();
        await e.idle();
        if (!clock || clock.queued === 0) break;
      }
    },
    async close() {
      client.close();
      await session.ended;
      device!.dispose();
    },
  };
  return h;
}

function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 7 + seed) & 0xff;
  return out;
}

t.test("identity: IDs, BAR0 of 1 MiB, INTx pin and a one-vector MSI capability", async (t) => {
  const h = await serve();
  const d = await h.client.regionRead(PciRegion.CONFIG, 0, 64);
  const dv = new DataView(d.buffer, d.byteOffset, 64);
  t.equal(dv.getUint16(0, true), EDU_IDS.vendor, "vendor 1234");
  t.equal(dv.getUint16(2, true), EDU_IDS.device, "device 11e8");
  t.equal(d[PciHeader.REVISION_ID], 0x10, "revision 0x10");
  t.equal(d[PciHeader.INTERRUPT_PIN], 1, "INTA#");
  const bar = await h.client.getRegionInfo(EDU_BAR);
  t.equal(bar.size, BigInt(EDU_BAR_SIZE), "BAR0 is 1 MiB");
  const msi = h.device.pci.msi!;
  t.ok(msi, "an MSI capability");
  const control = await h.cfg16(msi.offset + 2);
  t.equal(control & MsiControl.MMC_MASK, 0, "one vector");
  t.ok(control & MsiControl.ADDR64, "64-bit");
  t.equal((await h.client.getIrqInfo(PciIrq.MSI)).count, 1);
  t.equal((await h.client.getIrqInfo(PciIrq.INTX)).count, 1);
  t.equal(await h.r32(Reg.ID), EDU_ID, "identification 0x010000ed");
  t.equal(h.device.behaviour.dmaMask, DEFAULT_DMA_MASK);
  await h.close();
});

t.test("liveness, access widths, unlisted offsets", async (t) => {
  const h = await serve();
  t.equal(await h.r32(Reg.LIVENESS), 0, "0 at power-on");
  await h.w32(Reg.LIVENESS, 0x12345678);
  t.equal(await h.r32(Reg.LIVENESS), 0xedcba987, "reads the inverse of what was written");
  await h.w32(Reg.LIVENESS, 0);
  t.equal(await h.r32(Reg.LIVENESS), 0xffffffff);
  t.equal(await h.r64(Reg.ID), (1n << 64n) - 1n, "an 8-byte access below 0x80 reads all-ones");
  await h.w64(Reg.LIVENESS, 5n);
  t.equal(await h.r32(Reg.LIVENESS), 0xffffffff, "and an 8-byte write there is ignored");
  t.equal(await h.r32(0x30), 0xffffffff, "an unlisted offset reads all-ones");
  const errno = await h.client.regionRead(EDU_BAR, 0, 2).then(
    () => 0,
    (e: { errno?: number }) => e.errno,
  );
  t.equal(errno, Errno.EINVAL, "2-byte accesses are refused");
  await h.close();
});

t.test("factorial: the computing bit, the result, the interrupt on completion", async (t) => {
  const h = await serve({ manual: true });
  const [fd] = await h.client.enableInterrupts(PciIrq.INTX, 0, 1);
  await h.w32(Reg.FACTORIAL, 10);
  t.equal(await h.r32(Reg.STATUS), Status.COMPUTING, "computing: after the write's reply");
  await h.w32(Reg.FACTORIAL, 3);
  h.clock!.run();
  t.equal(await h.r32(Reg.STATUS), 0, "done");
  t.equal(await h.r32(Reg.FACTORIAL), 3628800, "10! (a write while computing was ignored)");
  t.equal(h.client.interruptCount(fd!), 0, "no interrupt without the status bit");

  await h.w32(Reg.STATUS, Status.IRQ_FACT | Status.COMPUTING);
  t.equal(await h.r32(Reg.STATUS), Status.IRQ_FACT, "only bit 7 is writable");
  await h.w32(Reg.FACTORIAL, 13);
  h.clock!.run();
  t.equal(await h.client.waitForInterrupt(fd!), 1, "INTx on completion");
  t.equal(await h.r32(Reg.FACTORIAL), factorial32(13), "13! modulo 2^32");
  t.equal(factorial32(13), 1932053504);
  t.equal(await h.r32(Reg.IRQ_STATUS), IrqCause.FACTORIAL, "interrupt status 0x1");
  await h.w32(Reg.IRQ_ACK, IrqCause.FACTORIAL);
  t.equal(await h.r32(Reg.IRQ_STATUS), 0);
  t.equal(h.device.pci.irq.mode, "intx");
  t.equal((await h.cfg16(PciHeader.STATUS)) & 0x08, 0, "the INTx line is low after the ack");
  await h.close();
});

t.test("interrupt raise/ack: INTx is a level held while the status is non-zero", async (t) => {
  const h = await serve();
  const [fd] = await h.client.enableInterrupts(PciIrq.INTX, 0, 1);
  await h.w32(Reg.IRQ_RAISE, 0x30);
  t.equal(await h.client.waitForInterrupt(fd!), 1, "raised");
  t.equal(await h.r32(Reg.IRQ_STATUS), 0x30);
  t.ok((await h.cfg16(PciHeader.STATUS)) & 0x08, "Status.Interrupt Status set");
  await h.w32(Reg.IRQ_ACK, 0x10);
  t.equal(await h.r32(Reg.IRQ_STATUS), 0x20, "a partial ack");
  t.ok((await h.cfg16(PciHeader.STATUS)) & 0x08, "still asserted");
  await h.w32(Reg.IRQ_ACK, 0x20);
  t.equal((await h.cfg16(PciHeader.STATUS)) & 0x08, 0, "deasserted once the status is 0");
  await h.close();
});

t.test("MSI: one message per raise once the driver enables it", async (t) => {
  const h = await serve();
  const msi = h.device.pci.msi!;
  await h.cfgWrite16(msi.offset + 2, MsiControl.ENABLE);
  const [fd] = await h.client.enableInterrupts(PciIrq.MSI, 0, 1);
  t.equal(h.device.pci.irq.mode, "msi");
  await h.w32(Reg.IRQ_RAISE, 0x1);
  t.equal(await h.client.waitForInterrupt(fd!), 1, "a message");
  await h.w32(Reg.IRQ_RAISE, 0x2);
  t.equal(await h.client.waitForInterrupt(fd!), 1, "another");
  await h.w32(Reg.IRQ_ACK, 0x3);
  t.equal(await h.r32(Reg.IRQ_STATUS), 0, "the driver still acknowledges");
  await h.close();
});

type Backing = "fd" | "message";
const mapper = (h: Harness, backing: Backing, iova: bigint, size: number, flags?: number) =>
  backing === "fd" ? h.client.mapMemory(iova, size, flags) : h.client.mapMessageMemory(iova, size, flags);

const RAM = 0x10_0000n;

async function dmaSetup(h: Harness, backing: Backing): Promise<ClientMemory> {
  const mem = await mapper(h, backing, RAM, 0x2000);
  await h.cfgWrite16(PciHeader.COMMAND, PciCommand.MEMORY | PciCommand.MASTER);
  return mem;
}

async function transfer(h: Harness, src: bigint, dst: bigint, count: number, cmd: number): Promise<number> {
  await h.w64(Reg.DMA_SRC, src);
  await h.w64(Reg.DMA_DST, dst);
  await h.w64(Reg.DMA_COUNT, BigInt(count));
  await h.w32(Reg.DMA_CMD, cmd | DmaCmd.START);
  await h.settle();
  return h.r32(Reg.DMA_CMD);
}

for (const backing of ["fd", "message"] as const) {
  t.test(`DMA with ${backing}-backed client memory: guest -> buffer -> guest`, async (t) => {
    const h = await serve();
    const mem = await dmaSetup(h, backing);
    const data = pattern(DMA_BUFFER_SIZE, 3);
    mem.bytes.set(data, 0);
    const [fd] = await h.client.enableInterrupts(PciIrq.INTX, 0, 1);

    const cmd = await transfer(h, RAM, BigInt(DMA_BUFFER), DMA_BUFFER_SIZE, DmaCmd.IRQ);
    t.equal(cmd, DmaCmd.IRQ, "done: START clear, no ERROR");
    t.same(h.device.behaviour.buffer, data, "client memory -> the whole buffer");
    t.equal(await h.r32(DMA_BUFFER + 0x10), new DataView(data.buffer).getUint32(0x10, true), "seen in BAR0");
    t.equal(await h.client.waitForInterrupt(fd!), 1, "the completion interrupt");
    t.equal(await h.r32(Reg.IRQ_STATUS), IrqCause.DMA, "interrupt status 0x100");
    await h.w32(Reg.IRQ_ACK, IrqCause.DMA);

    // Back out, 100 bytes from buffer+0x20 to RAM+0x1000+4, with 32-bit register writes.
    await h.w32(Reg.DMA_SRC, DMA_BUFFER + 0x20);
    await h.w32(Reg.DMA_DST, Number(RAM) + 0x1004);
    await h.w32(Reg.DMA_COUNT, 100);
    t.equal(await h.r64(Reg.DMA_DST), RAM + 0x1004n, "a 4-byte write to the low half sets the register");
    await h.w32(Reg.DMA_CMD, DmaCmd.START | DmaCmd.TO_RAM);
    await h.settle();
    t.equal(await h.r32(Reg.DMA_CMD), DmaCmd.TO_RAM, "done");
    t.same(mem.bytes.subarray(0x1004, 0x1004 + 100), data.subarray(0x20, 0x20 + 100), "buffer -> memory");
    t.same([...mem.bytes.subarray(0x1000, 0x1004)], [0, 0, 0, 0], "not a byte before");
    t.equal(mem.bytes[0x1004 + 100], 0, "nor after");
    t.equal(h.client.interruptCount(fd!), 0, "no interrupt without DmaCmd.IRQ");
    if (backing === "message") {
      t.ok(h.client.dmaServed.reads >= 1 && h.client.dmaServed.writes === 1, "through DMA_READ/DMA_WRITE");
    } else {
      t.same(h.client.dmaServed, { reads: 0, writes: 0, errors: 0 }, "zero-copy: no DMA message");
    }
    t.same(h.device.behaviour.stats, { factorials: 0, dmaTransfers: 2, dmaErrors: 0, irqsRaised: 1 });
    t.equal(h.dma.faults, 0);
    await h.close();
  });

  t.test(`DMA faults with ${backing}-backed memory set the ERROR bit and DMA_ERROR`, async (t) => {
    const h = await serve();
    const mem = await dmaSetup(h, backing);
    await mapper(h, backing, 0x20_0000n, 0x1000, DmaMapFlag.READ);
    mem.bytes.fill(0xaa);
    const [fd] = await h.client.enableInterrupts(PciIrq.INTX, 0, 1);

    await h.cfgWrite16(PciHeader.COMMAND, PciCommand.MEMORY);
    t.equal(
      await transfer(h, RAM, BigInt(DMA_BUFFER), 64, DmaCmd.IRQ),
      DmaCmd.IRQ | DmaCmd.ERROR,
      "Bus Master off: ERROR",
    );
    t.equal(await h.r32(Reg.DMA_ERROR), Errno.ENODEV, "DMA_ERROR ENODEV");
    t.equal(h.dma.faultCounts["bus-master-off"], 1, "the IOMMU model's fault, counted");
    t.equal(await h.client.waitForInterrupt(fd!), 1, "the completion interrupt still comes");
    t.same(h.device.behaviour.buffer.subarray(0, 64), new Uint8Array(64), "nothing copied");
    await h.w32(Reg.IRQ_ACK, IrqCause.DMA);
    await h.client.setIrqs({
      index: PciIrq.INTX,
      flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_UNMASK,
      start: 0,
      count: 1,
    });

    await h.cfgWrite16(PciHeader.COMMAND, PciCommand.MEMORY | PciCommand.MASTER);
    t.equal(await transfer(h, RAM, BigInt(DMA_BUFFER), 64, 0), 0, "Bus Master on: a new start clears ERROR");
    t.equal(await h.r32(Reg.DMA_ERROR), 0);
    t.same(h.device.behaviour.buffer.subarray(0, 64), new Uint8Array(64).fill(0xaa));

    t.equal(await transfer(h, 0x30_0000n, BigInt(DMA_BUFFER), 64, 0), DmaCmd.ERROR, "unmapped");
    t.equal(await h.r32(Reg.DMA_ERROR), Errno.ENOENT);
    t.equal(
      await transfer(h, BigInt(DMA_BUFFER), 0x20_0000n, 64, DmaCmd.TO_RAM),
      DmaCmd.TO_RAM | DmaCmd.ERROR,
      "a write to a read-only map",
    );
    t.equal(await h.r32(Reg.DMA_ERROR), Errno.EPERM);
    t.equal(
      await transfer(h, RAM, BigInt(DMA_BUFFER + 0xf00), 0x200, 0),
      DmaCmd.ERROR,
      "beyond the end of the buffer",
    );
    t.equal(await h.r32(Reg.DMA_ERROR), Errno.EINVAL);
    t.equal(await transfer(h, RAM, 0x1000n, 16, 0), DmaCmd.ERROR, "not the buffer at all");
    t.equal(await transfer(h, RAM, BigInt(DMA_BUFFER), 4097, 0), DmaCmd.ERROR, "more than 4 KiB");
    t.equal(h.device.behaviour.stats.dmaErrors, 6);
    t.match(h.logs.text(), /edu: DMA failed \(errno 19\)/, "failures are logged");
    t.match(h.logs.text(), /DMA fault \(bus-master-off\)/);
    await h.close();
  });
}

t.test("the DMA mask drops address bits above it (28 bits by default)", async (t) => {
  const h = await serve();
  const mem = await dmaSetup(h, "fd");
  mem.bytes.set([1, 2, 3, 4], 0);
  t.equal(await transfer(h, (1n << 40n) | (1n << 28n) | RAM, BigInt(DMA_BUFFER), 4, 0), 0);
  t.same([...h.device.behaviour.buffer.subarray(0, 4)], [1, 2, 3, 4], "bits 28 and up ignored");
  await h.close();

  const wide = await serve({ options: { "dma-mask": "0xffffffffffffffff" } });
  await dmaSetup(wide, "fd");
  t.equal(await transfer(wide, (1n << 28n) | RAM, BigInt(DMA_BUFFER), 4, 0), DmaCmd.ERROR, "a 64-bit mask");
  t.equal(await wide.r32(Reg.DMA_ERROR), Errno.ENOENT, "reaches the real (unmapped) address");
  await wide.close();
  const log = new SinkLogger(new MemorySink(), "debug");
  const build = (mask: string) =>
    new PciDevice(edu, { dma: new DeviceDma(log), log, options: { "dma-mask": mask } });
  t.throws(
    () => build("0x1234"),
    /device edu: option dma-mask=0x1234 is refused \(not a mask of low bits\)/,
    "a mask that is not low bits is refused",
  );
  // Regression: the mask went straight to BigInt(), so "banana" was refused with "Cannot convert
  // banana to a BigInt", naming neither the device nor the option.
  t.throws(
    () => build("banana"),
    /^device edu: option dma-mask=banana is refused \(not an integer\); it takes integer 0x1-0xffffffffffffffff, a mask of low bits$/,
    "a value that is no integer names the device, the option and what it takes",
  );
  t.throws(() => build("0x1ffffffffffffffff"), /dma-mask=0x1ffffffffffffffff is refused \(out of range\)/);
  const decimal = build("268435455");
  t.equal(decimal.behaviour.dmaMask, DEFAULT_DMA_MASK, "decimal works too");
  decimal.dispose();
});

t.test("DMA starts only after the reply to the register write (and registers lock meanwhile)", async (t) => {
  const h = await serve({ manual: true });
  const mem = await dmaSetup(h, "message");
  mem.bytes.set(pattern(256, 9), 0);
  await h.w64(Reg.DMA_SRC, RAM);
  await h.w64(Reg.DMA_DST, BigInt(DMA_BUFFER));
  await h.w64(Reg.DMA_COUNT, 256n);
  await h.w32(Reg.DMA_CMD, DmaCmd.START);
  t.equal(h.client.dmaServed.reads, 0, "the write's reply came before any DMA_READ");
  t.equal(await h.r32(Reg.DMA_CMD), DmaCmd.START, "running");
  await h.w64(Reg.DMA_SRC, 0x5000n);
  t.equal(await h.r64(Reg.DMA_SRC), RAM, "programming is ignored while it runs");
  await h.settle();
  t.equal(h.client.dmaServed.reads, 1, "then one DMA_READ");
  t.equal(await h.r32(Reg.DMA_CMD), 0, "done");
  t.same(h.device.behaviour.buffer.subarray(0, 256), pattern(256, 9));
  await h.close();
});

t.test("reset: DEVICE_RESET drops pending work and clears registers and buffer", async (t) => {
  const h = await serve({ manual: true });
  const mem = await dmaSetup(h, "fd");
  mem.bytes.fill(0x55);
  await h.w32(Reg.LIVENESS, 1);
  await h.w32(Reg.FACTORIAL, 5);
  await h.w64(Reg.DMA_SRC, RAM);
  await h.w64(Reg.DMA_DST, BigInt(DMA_BUFFER));
  await h.w64(Reg.DMA_COUNT, 16n);
  await h.w32(Reg.DMA_CMD, DmaCmd.START);
  await h.w32(Reg.IRQ_RAISE, 4);
  await h.client.reset();
  await h.settle();
  t.equal(await h.r32(Reg.LIVENESS), 0);
  t.equal(await h.r32(Reg.FACTORIAL), 0, "the factorial never ran");
  t.equal(await h.r32(Reg.STATUS), 0);
  t.equal(await h.r32(Reg.IRQ_STATUS), 0);
  t.equal(await h.r32(Reg.DMA_CMD), 0);
  t.equal(await h.r64(Reg.DMA_SRC), 0n);
  t.same(h.device.behaviour.buffer.subarray(0, 16), new Uint8Array(16), "the DMA never ran");
  t.equal(h.device.behaviour.stats.dmaTransfers, 0);
  await h.close();
});
