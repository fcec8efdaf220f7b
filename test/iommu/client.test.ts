// The IOMMU through the protocol: a TypeScript client maps memory (with and without an fd) and the
// scratchpad device (or the test's own hands on its ctx.dma) does DMA. Every DMA_MAP/DMA_UNMAP
// refusal with its errno, read-only maps, peer mappings, the bus gate, unmap with a live view and
// with DMA in flight, dirty logging through DEVICE_FEATURE.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { Reg, scratchpad } from "../../devices/scratchpad/index.ts";
import { native } from "../../native/index.ts";
import {
  Command,
  Device,
  DeviceDma,
  DmaUnmapFlag,
  decodeDmaLoggingReport,
  decodeDmaLoggingStart,
  encodeDmaLoggingReport,
  encodeDmaLoggingStart,
  encodeDmaUnmap,
  Feature,
  FeatureFlag,
  PeerRegistry,
  Server,
  silentLogger,
  VfioUserClient,
} from "../../src/index.ts";
import { openFdCount } from "../../src/util/fds.ts";
import { errnoOf, type Harness, harness, RO, RW, U64_MAX } from "./helpers.ts";

/** Program the scratchpad's DMA engine and wait for its completion interrupt: 2 done, 3 fault. */
async function deviceDma(h: Harness, addr: bigint, len: number, cmd: 1 | 2): Promise<number> {
  const c = h.client;
  const [fd] = await c.enableInterrupts(0, 3, 1);
  await c.regionWrite32(0, Reg.DMA_ADDR_LO, Number(addr & 0xffffffffn));
  await c.regionWrite32(0, Reg.DMA_ADDR_HI, Number(addr >> 32n));
  await c.regionWrite32(0, Reg.DMA_LEN, len);
  await c.regionWrite32(0, Reg.DMA_CMD, cmd);
  await c.waitForInterrupt(fd!);
  return c.regionRead32(0, Reg.DMA_STATUS);
}

const READ_MEM = 1; // client memory -> device
const WRITE_MEM = 2; // device -> client memory

t.test("DMA_MAP: every refusal carries its errno and leaves nothing behind", async (t) => {
  const h = await harness();
  const map = (iova: bigint, size: bigint, flags = RW, extra: { fd?: number; offset?: bigint } = {}) =>
    errnoOf(h.client.dmaMap({ iova, size, flags, ...extra }));
  t.equal(await map(0x1000n, 0x1000n, 0), 22, "no READ: EINVAL");
  t.equal(await map(0x1000n, 0x1000n, 2), 22, "WRITE alone: EINVAL");
  t.equal(await map(0x1000n, 0x1000n, 0x7), 22, "an unknown flag: EINVAL");
  t.equal(await map(0x1000n, 0n), 22, "size 0: EINVAL");
  t.equal(await map(0x1001n, 0x1000n), 22, "iova not page-aligned: EINVAL");
  t.equal(await map(0x1000n, 0xfffn), 22, "size not page-aligned: EINVAL");
  t.equal(await map(U64_MAX - 0xfffn, 0x2000n), 22, "iova+size wraps past 2^64: EINVAL");
  t.equal(await map(0n, U64_MAX), 22, "size 2^64-1: EINVAL");
  t.equal(await map(U64_MAX - 0xfffn, 0x1000n), 0, "an area ending at 2^64-1");
  t.equal(await map(0x10000n, 0x4000n), 0);
  t.equal(await map(0x10000n, 0x4000n), 17, "the identical map again: EEXIST");
  t.equal(await map(0xf000n, 0x2000n), 17, "overlapping from below: EEXIST");
  t.equal(await map(0x13000n, 0x2000n), 17, "overlapping from above: EEXIST");
  t.equal(await map(0x11000n, 0x1000n), 17, "inside: EEXIST");
  const before = openFdCount();
  const small = native.memfdCreate("small", 0x1000, true);
  t.equal(await map(0x100000n, 0x2000n, RW, { fd: small }), 22, "fd smaller than size: EINVAL");
  t.equal(
    await map(0x100000n, 0x1000n, RW, { fd: small, offset: 0x1000n }),
    22,
    "offset past its end: EINVAL",
  );
  t.equal(await map(0x100000n, 0x1000n, RW, { fd: small, offset: 0x800n }), 22, "offset not aligned: EINVAL");
  const efd = native.eventfd(0);
  t.equal(await map(0x100000n, 0x1000n, RW, { fd: efd }), 22, "an eventfd: EINVAL");
  native.close(small);
  native.close(efd);
  t.equal(openFdCount(), before, "the server closed every fd it refused");
  t.equal(h.session.space.count, 2);
  t.equal(await deviceDma(h, 0x100000n, 8, READ_MEM), 3, "nothing is mapped there: a fault, not a crash");
  await h.close();
});

t.test("DMA_UNMAP: whole areas only (ENOENT otherwise), ALL, and the malformed", async (t) => {
  const h = await harness();
  await h.client.dmaMap({ iova: 0x1000n, size: 0x2000n });
  await h.client.dmaMap({ iova: 0x3000n, size: 0x1000n });
  const unmap = (addr: bigint, size: bigint, flags = 0) => errnoOf(h.client.dmaUnmap(addr, size, flags));
  t.equal(await unmap(0x1000n, 0x1000n), 2, "the first half of an area: ENOENT");
  t.equal(await unmap(0x2000n, 0x1000n), 2, "the second half: ENOENT");
  t.equal(await unmap(0x1000n, 0x3000n), 2, "two areas at once: ENOENT");
  t.equal(await unmap(0x9000n, 0x1000n), 2, "nothing there: ENOENT");
  t.equal(await unmap(0x1000n, 0x2000n, DmaUnmapFlag.ALL), 22, "ALL with an address: EINVAL");
  const v1 = encodeDmaUnmap({
    argsz: 24 + 16 + 8,
    flags: DmaUnmapFlag.GET_DIRTY_BITMAP,
    addr: 0x1000n,
    size: 0x2000n,
    bitmap: { pgsize: 4096n, size: 8n },
  });
  t.equal(await errnoOf(h.client.request(Command.DMA_UNMAP, v1)), 22, "the v1 dirty bitmap: EINVAL");
  t.equal(await unmap(0x1000n, 0x2000n, 0x10), 22, "an unknown flag: EINVAL");
  const short = encodeDmaUnmap({ argsz: 16, flags: 0, addr: 0x1000n, size: 0x2000n });
  t.equal(await errnoOf(h.client.request(Command.DMA_UNMAP, short)), 22, "argsz too small: EINVAL");
  t.equal(h.session.space.count, 2, "no refusal changed anything");
  t.equal(await unmap(0x1000n, 0x2000n), 0);
  t.equal(await unmap(0n, 0n, DmaUnmapFlag.ALL), 0);
  t.equal(h.session.space.count, 0);
  await h.close();
});

t.test("both backings: the device reads and writes fd memory and message memory", async (t) => {
  const h = await harness({ client: { maxDataXferSize: 4096 } });
  const devMem = h.session.device.region(1)!.memory!;
  const fdMem = await h.client.mapMemory(0x10000n, 0x4000);
  const msgMem = await h.client.mapMessageMemory(0x14000n, 0x4000);
  const pattern = Uint8Array.from({ length: 0x3000 }, (_, i) => (i * 13) & 0xff);
  fdMem.bytes.set(pattern.subarray(0, 0x1800), 0x2800);
  msgMem.bytes.set(pattern.subarray(0x1800), 0);
  t.equal(await deviceDma(h, 0x12800n, 0x3000, READ_MEM), 2, "one read across both areas");
  t.same(devMem.subarray(0, 0x3000), pattern);
  t.ok(h.client.dmaServed.reads >= 2, "message memory was read with DMA_READs split to 4 KiB");
  devMem.fill(0x5a, 0, 0x3000);
  t.equal(await deviceDma(h, 0x12800n, 0x3000, WRITE_MEM), 2);
  t.ok(fdMem.bytes.subarray(0x2800).every((b) => b === 0x5a));
  t.ok(msgMem.bytes.subarray(0, 0x1800).every((b) => b === 0x5a));
  t.equal(h.dma.faults, 0);
  await h.close();
});

t.test("read-only maps: the device may read, its writes fault and change nothing", async (t) => {
  const h = await harness();
  const fdMem = await h.client.mapMemory(0x10000n, 0x1000, RO);
  const msgMem = await h.client.mapMessageMemory(0x20000n, 0x1000, RO);
  fdMem.bytes.set([1, 2, 3]);
  msgMem.bytes.set([4, 5, 6]);
  h.session.device.region(1)!.memory!.fill(0xee, 0, 16);
  t.equal(await deviceDma(h, 0x10000n, 3, WRITE_MEM), 3, "fd memory: fault");
  t.equal(await deviceDma(h, 0x20000n, 3, WRITE_MEM), 3, "message memory: fault");
  t.same([...fdMem.bytes.subarray(0, 3)], [1, 2, 3]);
  t.same([...msgMem.bytes.subarray(0, 3)], [4, 5, 6]);
  t.equal(h.client.dmaServed.writes, 0, "no DMA_WRITE was even sent");
  t.equal(h.dma.faultCounts.permission, 2);
  t.equal(await deviceDma(h, 0x10000n, 3, READ_MEM), 2);
  t.throws(() => h.dma.view(0x10000n, 1, "write"));
  t.equal(h.dma.view(0x10000n, 3).bytes[2], 3);
  await h.close();
});

t.test("peer mapping: the device's DMA reaches another device's region", async (t) => {
  const h = await harness();
  const registry = new PeerRegistry();
  const other = new Device(scratchpad, { dma: new DeviceDma(silentLogger), log: silentLogger });
  const reg = registry.register("pad1", other);
  // The client knows nothing of peers: the embedding program maps the peer's memory region.
  h.session.space.mapPeer(0x8000_0000n, registry.resolve("pad1", 1));
  h.session.space.mapPeer(0x9000_0000n, registry.resolve("pad1", 0)); // its registers (trapped, UC)
  h.session.device.region(1)!.memory!.set([7, 7, 7, 7], 0);
  t.equal(await deviceDma(h, 0x8000_0100n, 4, WRITE_MEM), 2, "device to peer memory");
  t.same([...other.region(1)!.memory!.subarray(0x100, 0x104)], [7, 7, 7, 7]);
  t.equal(await deviceDma(h, 0x9000_0000n, 4, READ_MEM), 2, "device reads the peer's ID register");
  t.same([...h.session.device.region(1)!.memory!.subarray(0, 4)], [0x31, 0x55, 0x46, 0x56]);
  h.session.device.region(1)!.memory!.set([0x78, 0x56, 0x34, 0x12], 0);
  t.equal(await deviceDma(h, 0x9000_0000n + BigInt(Reg.SCRATCH), 4, WRITE_MEM), 2, "a posted register write");
  const scratch = await other.read(0, BigInt(Reg.SCRATCH), 4);
  t.equal(Buffer.from(scratch).readUInt32LE(), 0x12345678);
  t.equal(
    await errnoOf(h.client.dmaMap({ iova: 0x8000_0000n, size: 0x1000n })),
    17,
    "a client map over a peer: EEXIST",
  );
  t.equal(
    await errnoOf(h.client.dmaUnmap(0x8000_0000n, 0x10000n)),
    0,
    "the client may unmap it like any area",
  );
  reg.unregister();
  await h.close();
  other.dispose();
});

t.test("the bus gate closed: device DMA faults bus-master-off", async (t) => {
  const h = await harness();
  await h.client.mapMemory(0x10000n, 0x1000);
  let master = false;
  h.dma.setGate(() => master);
  t.equal(await deviceDma(h, 0x10000n, 4, READ_MEM), 3);
  t.equal(h.dma.faultCounts["bus-master-off"], 1);
  t.match(h.sink.text(), /DMA fault \(bus-master-off\)/);
  master = true;
  t.equal(await deviceDma(h, 0x10000n, 4, READ_MEM), 2);
  await h.close();
});

t.test("DMA_UNMAP of memory the device holds a view on: the device is told first", async (t) => {
  const h = await harness();
  const mem = await h.client.mapMemory(0x10000n, 0x2000);
  mem.bytes.set([1, 2, 3, 4], 0x10);
  const view = h.dma.view(0x10010n, 4, "rw");
  const kept = view.bytes;
  const seen: string[] = [];
  h.dma.onUnmap((ev) => {
    seen.push(`unmap 0x${ev.iova.toString(16)} handles=${ev.handles.length} bytes=${[...kept].join(",")}`);
  });
  await h.client.dmaUnmap(0x10000n, 0x2000n);
  t.same(seen, ["unmap 0x10000 handles=1 bytes=1,2,3,4"], "told before the memory went");
  t.ok(view.stale);
  t.equal(view.bytes.length, 0);
  t.equal(kept.length, 0, "even the device's own reference reads as empty");
  await h.close();
});

t.test("the DMA_UNMAP reply waits for message DMA in flight on the area", async (t) => {
  const h = await harness({ client: { maxDataXferSize: 4096 } });
  await h.client.mapMessageMemory(0x10000n, 0x40000);
  const events: string[] = [];
  const reading = h.dma.read(0x10000n, 0x40000).then(
    () => events.push("read done"),
    (e) => events.push(`read ${e.kind}`),
  );
  // The unmap goes out at once: the read's 64 DMA_READs are still being served.
  await h.client.dmaUnmap(0x10000n, 0x40000n).then(() => events.push("unmap reply"));
  await reading;
  t.same(events, ["read unmapped", "unmap reply"], "the transfer stopped, then the reply went");
  t.ok(
    h.client.dmaServed.reads < 64,
    `the remaining messages were not sent (${h.client.dmaServed.reads} of 64)`,
  );
  await h.close();
});

t.test("a client leaving: its areas go, the device is told, views go stale", async (t) => {
  const h = await harness();
  await h.client.mapMemory(0x10000n, 0x1000);
  const v = h.dma.view(0x10000n, 8);
  let told = 0;
  h.dma.onUnmap(() => {
    told++;
  });
  await h.close();
  t.equal(told, 1);
  t.ok(v.stale);
  t.equal(h.dma.space, null);
  t.equal((await h.dma.read(0x10000n, 1).catch((e) => e)).kind, "no-client");
});

t.test("dirty logging through DEVICE_FEATURE: probe, start, report, stop", async (t) => {
  const h = await harness();
  const c = h.client;
  const { GET, SET, PROBE } = FeatureFlag;
  for (const [f, op] of [
    [Feature.DMA_LOGGING_START, SET],
    [Feature.DMA_LOGGING_STOP, SET],
    [Feature.DMA_LOGGING_REPORT, GET],
  ] as const) {
    const r = await c.deviceFeature(f | PROBE | op);
    t.equal(r.flags, f | PROBE | op, `PROBE of feature ${f}`);
    t.equal(await errnoOf(c.deviceFeature(f | PROBE | (op === GET ? SET : GET))), 22, "the other op: EINVAL");
  }
  t.equal(await errnoOf(c.deviceFeature(Feature.MIGRATION | PROBE)), 25, "migration stays ENOTTY");
  const report = (iova: bigint, length: bigint, pageSize = 4096n, argsz?: number) =>
    c.deviceFeature(
      Feature.DMA_LOGGING_REPORT | GET,
      encodeDmaLoggingReport({ iova, length, pageSize }),
      argsz ?? 8 + 24 + 64,
    );
  t.equal(await errnoOf(report(0x10000n, 0x8000n)), 22, "a report before START: EINVAL");

  const fdMem = await c.mapMemory(0x10000n, 0x8000);
  await c.mapMessageMemory(0x18000n, 0x1000);
  const start = await c.deviceFeature(
    Feature.DMA_LOGGING_START | SET,
    encodeDmaLoggingStart({ pageSize: 1024n, ranges: [] }),
  );
  t.equal(decodeDmaLoggingStart(start.data).pageSize, 4096n, "the server chose its page size");
  t.equal(
    await errnoOf(
      c.deviceFeature(
        Feature.DMA_LOGGING_START | SET,
        encodeDmaLoggingStart({ pageSize: 4096n, ranges: [] }),
      ),
    ),
    16,
    "started twice: EBUSY",
  );
  t.equal(
    await errnoOf(c.deviceFeature(Feature.DMA_LOGGING_START | GET, new Uint8Array(16))),
    22,
    "GET of START",
  );

  t.equal(await deviceDma(h, 0x10000n + 0x2ffcn, 8, WRITE_MEM), 2, "a write across pages 2 and 3");
  t.equal(await deviceDma(h, 0x18000n, 4, WRITE_MEM), 2, "message memory, page 8");
  t.equal(await deviceDma(h, 0x15000n, 4, READ_MEM), 2, "a read (not logged)");
  fdMem.bytes[0x7000] = 1; // the client's own store is not the device's business
  const r = await report(0x10000n, 0x9000n);
  t.equal(r.argsz, 8 + 24 + 8);
  const rep = decodeDmaLoggingReport(r.data);
  t.equal(rep.iova, 0x10000n);
  t.same([...rep.bitmap!], [0b0000_1100, 1, 0, 0, 0, 0, 0, 0], "pages 2, 3 and 8");
  const again = decodeDmaLoggingReport((await report(0x10000n, 0x9000n)).data);
  t.same([...again.bitmap!], [0, 0, 0, 0, 0, 0, 0, 0], "the report cleared them");

  await deviceDma(h, 0x10000n, 4, WRITE_MEM);
  const truncated = await report(0x10000n, 0x9000n, 4096n, 8 + 24);
  t.equal(truncated.argsz, 8 + 24 + 8, "argsz too small: the size needed comes back");
  t.equal(truncated.data.length, 24, "without a bitmap");
  const full = decodeDmaLoggingReport((await report(0x10000n, 0x9000n)).data);
  t.equal(full.bitmap![0], 1, "and nothing was cleared by the truncated reply");

  t.equal(await errnoOf(report(0x10000n, 0x9000n, 3000n)), 22, "page size not a power of two");
  t.equal(await errnoOf(report(0x10000n, 0n)), 22, "empty range");
  t.equal(await errnoOf(report(U64_MAX, 2n)), 22, "wrapping range");
  t.equal(await errnoOf(report(0n, 1n << 50n)), 7, "a bitmap over max_data_xfer_size: E2BIG");
  const withMap = encodeDmaLoggingReport({
    iova: 0n,
    length: 4096n,
    pageSize: 4096n,
    bitmap: new Uint8Array(8),
  });
  t.equal(
    await errnoOf(c.deviceFeature(Feature.DMA_LOGGING_REPORT | GET, withMap, 64)),
    22,
    "a bitmap in the request",
  );

  const stop = await c.deviceFeature(Feature.DMA_LOGGING_STOP | SET);
  t.equal(stop.flags, Feature.DMA_LOGGING_STOP | SET);
  t.equal(
    await errnoOf(c.deviceFeature(Feature.DMA_LOGGING_STOP | SET, new Uint8Array(4))),
    22,
    "STOP with data",
  );
  t.equal(await errnoOf(report(0x10000n, 0x9000n)), 22, "a report after STOP");
  t.notOk(h.session.space.dirty.logging);

  const ranged = encodeDmaLoggingStart({ pageSize: 4096n, ranges: [{ iova: 0x14000n, length: 0x1000n }] });
  await c.deviceFeature(Feature.DMA_LOGGING_START | SET, ranged);
  await deviceDma(h, 0x13000n, 0x2000, WRITE_MEM);
  const ranges = decodeDmaLoggingReport((await report(0x10000n, 0x9000n)).data);
  t.same([...ranges.bitmap!], [0b0001_0000, 0, 0, 0, 0, 0, 0, 0], "only the logged range");
  const overlapping = encodeDmaLoggingStart({
    pageSize: 4096n,
    ranges: [
      { iova: 0n, length: 0x2000n },
      { iova: 0x1000n, length: 0x1000n },
    ],
  });
  await c.deviceFeature(Feature.DMA_LOGGING_STOP | SET);
  t.equal(
    await errnoOf(c.deviceFeature(Feature.DMA_LOGGING_START | SET, overlapping)),
    22,
    "overlapping ranges",
  );
  await h.close();
});

t.test("over a real socket: fd memory through SCM_RIGHTS, device DMA, unmap, fd hygiene", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "vfu-iommu-"));
  const socketPath = path.join(dir, "pad.sock");
  const before = openFdCount();
  const server = new Server({ log: silentLogger });
  server.listen((dma, log) => new Device(scratchpad, { dma, log }), { socketPath });
  const client = await VfioUserClient.connect(socketPath);
  const h = { client } as Harness;
  const mem = await client.mapMemory(0x40000n, 0x2000);
  mem.bytes.set([9, 8, 7, 6], 0x1000);
  t.equal(await deviceDma(h, 0x41000n, 4, READ_MEM), 2);
  await client.regionWrite32(1, 0x10, 0x01020304);
  t.equal(await deviceDma(h, 0x40000n, 0x20, WRITE_MEM), 2);
  t.same([...mem.bytes.subarray(0x10, 0x14)], [4, 3, 2, 1]);
  await client.dmaUnmap(0x40000n, 0x2000n);
  t.equal(await deviceDma(h, 0x40000n, 4, READ_MEM), 3, "unmapped: a fault");
  client.close();
  await server.close();
  t.equal(openFdCount(), before, "the server released the client's memfd");
  rmSync(dir, { recursive: true, force: true });
});
