// ctx.dma on its own (DeviceDma over an AddressSpace): views, scatter-gather, faults and their
// counters, the bus gate, unmap with live views and in-flight transfers, peer regions.
import t from "tap";
import { native } from "../../native/index.ts";
import {
  Device,
  DeviceDma,
  DmaFault,
  defineDevice,
  MemorySink,
  PeerRegistry,
  SinkLogger,
  silentLogger,
} from "../../src/index.ts";
import { bytes, RO, RW, SparseMemory, space, thrown } from "./helpers.ts";

function setup() {
  const s = space();
  const port = new SparseMemory();
  s.messages = port;
  const sink = new MemorySink();
  const dma = new DeviceDma(new SinkLogger(sink, "debug"));
  dma.attach(s);
  const fds: number[] = [];
  const mapFd = (iova: bigint, size: number, flags = RW) => {
    const fd = native.memfdCreate("dma-test", size, true);
    fds.push(fd);
    s.map({ iova, size: BigInt(size), flags, fd: native.dup(fd), offset: 0n });
    return new Uint8Array(native.mmap(fd, size, 0, true));
  };
  return {
    s,
    port,
    dma,
    sink,
    mapFd,
    async done() {
      await s.unmapAll();
      for (const fd of fds) native.close(fd);
    },
  };
}

t.test("view: zero-copy both ways, released explicitly", async (t) => {
  const { s, dma, mapFd, done } = setup();
  const mem = mapFd(0x10000n, 0x2000);
  mem.set([1, 2, 3], 0x100);
  const v = dma.view(0x10100n, 3);
  t.same([...v.bytes], [1, 2, 3]);
  t.equal(v.cache, "WB");
  mem[0x101] = 9;
  t.equal(v.bytes[1], 9, "the view sees the client's later store: no copy");
  const w = dma.view(0x10200n, 4, "write");
  w.bytes.set([5, 6, 7, 8]);
  t.same([...mem.subarray(0x200, 0x204)], [5, 6, 7, 8]);
  t.equal(dma.liveHandles, 2);
  v.release();
  v.release();
  w.release();
  t.ok(v.released && !v.stale);
  t.equal(v.bytes.length, 0, "a released view shows nothing");
  t.equal(dma.liveHandles, 0);
  t.equal(s.areas()[0]!.holds.size, 0);
  await done();
});

t.test("view refusals are typed faults, counted and logged", async (t) => {
  const { dma, sink, mapFd, s, done } = setup();
  mapFd(0x10000n, 0x1000);
  mapFd(0x11000n, 0x1000, RO);
  s.map({ iova: 0x20000n, size: 0x1000n, flags: RW, fd: -1, offset: 0n });
  const kind = (f: () => unknown) => {
    try {
      f();
      return "ok";
    } catch (e) {
      return e instanceof DmaFault ? e.kind : `not a DmaFault: ${e}`;
    }
  };
  t.equal(
    kind(() => dma.view(0x30000n, 4)),
    "unmapped",
  );
  t.equal(
    kind(() => dma.view(0x11000n, 4, "write")),
    "permission",
    "write view of a read-only area",
  );
  t.equal(
    kind(() => dma.view(0x11000n, 4, "rw")),
    "permission",
  );
  t.equal(
    kind(() => dma.view(0x10ffen, 4)),
    "not-mappable",
    "crosses two areas",
  );
  t.equal(
    kind(() => dma.view(0x20000n, 4)),
    "not-mappable",
    "message-backed memory",
  );
  t.equal(
    kind(() => dma.view(0x10000n, 0)),
    "out-of-range",
  );
  t.equal(
    kind(() => dma.view(0x10000n, 4, "exec" as never)),
    "out-of-range",
  );
  t.equal(
    kind(() => dma.view((1n << 64n) - 2n, 4)),
    "out-of-range",
    "wraps",
  );
  t.notOk(dma.mappable(0x20000n, 4));
  t.ok(dma.mappable(0x11000n, 4));
  t.equal(dma.faults, 8, "mappable() counts nothing");
  t.equal(dma.faultCounts["not-mappable"], 2);
  t.equal(dma.faultCounts.permission, 2);
  t.equal(dma.lastFault?.kind, "out-of-range");
  t.match(sink.text(), /DMA fault \(permission\)/);
  const r = await dma.read(0x30000n, 1).catch((e) => e);
  t.equal(r.kind, "unmapped");
  t.equal(dma.faults, 9);
  await done();
});

t.test("sg: segments per area and window, zero-copy where mapped, copies elsewhere", async (t) => {
  const { s, port, dma, mapFd, done } = setup();
  const a = mapFd(0x10000n, 0x1000);
  s.map({ iova: 0x11000n, size: 0x1000n, flags: RW, fd: -1, offset: 0n });
  const c = mapFd(0x12000n, 0x1000);
  const list = dma.sg(0x10f00n, 0x1200, "rw");
  t.same(
    list.segments.map((x) => [x.iova, x.length, x.kind, x.bytes?.length ?? null]),
    [
      [0x10f00n, 0x100, "fd", 0x100],
      [0x11000n, 0x1000, "message", null],
      [0x12000n, 0x100, "fd", 0x100],
    ],
  );
  const data = Uint8Array.from({ length: 0x1200 }, (_, i) => (i * 3) & 0xff);
  await list.write(data);
  t.same(a.subarray(0xf00), data.subarray(0, 0x100));
  t.same(port.peek(0x11000n, 0x1000), data.subarray(0x100, 0x1100));
  t.same(c.subarray(0, 0x100), data.subarray(0x1100));
  t.same(await list.read(), data);
  t.same(await list.segments[1]!.read(), data.subarray(0x100, 0x1100));
  await list.segments[1]!.write(bytes(0xaa, 0xbb), 0x10);
  t.same([...port.peek(0x11010n, 2)], [0xaa, 0xbb]);
  list.segments[2]!.bytes!.set([0xcc]);
  t.equal(c[0], 0xcc, "a zero-copy segment writes through");
  const over = await list.segments[0]!.write(new Uint8Array(0x101)).catch((e) => e);
  t.equal(over.kind, "out-of-range");
  const short = await list.write(new Uint8Array(3)).catch((e) => e);
  t.equal(short.kind, "out-of-range");
  list.release();
  t.equal(list.segments[0]!.bytes!.length, 0, "released: zero-copy bytes are gone");
  t.equal((await list.read().catch((e) => e)).kind, "out-of-range", "a released list refuses");
  const ro = dma.sg(0x10000n, 4, "read");
  t.equal((await ro.write(new Uint8Array(4)).catch((e) => e)).kind, "permission");
  ro.release();
  const gap = (() => {
    try {
      dma.sg(0x12f00n, 0x200);
    } catch (e) {
      return (e as DmaFault).kind;
    }
  })();
  t.equal(gap, "unmapped");
  t.equal(dma.liveHandles, 0);
  await done();
});

t.test("the bus gate: closed, every new DMA faults bus-master-off", async (t) => {
  const { dma, mapFd, done } = setup();
  mapFd(0x10000n, 0x1000);
  let master = false;
  dma.setGate(() => master);
  t.notOk(dma.gateOpen);
  const r = await dma.read(0x10000n, 4).catch((e) => e);
  t.equal(r.kind, "bus-master-off");
  t.equal(r.errno, 19, "ENODEV, as QEMU answers");
  t.equal((await dma.write(0x10000n, bytes(1)).catch((e) => e)).kind, "bus-master-off");
  t.match(
    thrown(() => dma.view(0x10000n, 4)),
    { kind: "bus-master-off" },
  );
  t.match(
    thrown(() => dma.sg(0x10000n, 4)),
    { kind: "bus-master-off" },
  );
  master = true;
  const list = dma.sg(0x10000n, 4, "rw");
  t.same([...(await dma.read(0x10000n, 2))], [0, 0]);
  master = false;
  t.equal((await list.read().catch((e) => e)).kind, "bus-master-off", "each list operation checks the gate");
  dma.setGate(null);
  t.ok(dma.gateOpen);
  t.same([...(await list.read())], [0, 0, 0, 0]);
  list.release();
  t.equal(dma.faultCounts["bus-master-off"], 5);
  await done();
});

t.test("unmap with a live view: the device is told first, then the view reads as empty", async (t) => {
  const { s, dma, mapFd, done } = setup();
  mapFd(0x10000n, 0x2000);
  const v = dma.view(0x10010n, 16, "rw");
  const raw = v.bytes; // a device that kept the Uint8Array itself
  raw[0] = 42;
  const list = dma.sg(0x10000n, 0x100);
  const events: string[] = [];
  const off = dma.onUnmap((ev) => {
    events.push(
      `told [0x${ev.iova.toString(16)}, 0x${ev.last.toString(16)}] with ${ev.handles.length} handles`,
    );
    t.equal(raw[0], 42, "during the callback the memory is still there");
    t.notOk(v.stale);
    t.ok(ev.handles.includes(v) && ev.handles.includes(list));
  });
  await s.unmap(0x10000n, 0x2000n);
  t.same(events, ["told [0x10000, 0x11fff] with 2 handles"]);
  t.ok(v.stale && v.released && list.stale);
  t.equal(v.bytes.length, 0, "the handle is empty");
  t.equal(raw.length, 0, "the Uint8Array the device kept is detached: it reads as empty");
  t.equal(raw[0], undefined, "and indexing it does not crash");
  t.equal((await list.read().catch((e) => e)).kind, "unmapped", "list operations fault");
  v.release();
  t.equal(dma.liveHandles, 0);
  off();
  await done();
});

t.test("a listener may release its views and make the unmap wait for it", async (t) => {
  const { s, dma, mapFd, done } = setup();
  mapFd(0x10000n, 0x1000);
  const v = dma.view(0x10000n, 8);
  let finished = false;
  dma.onUnmap(async (ev) => {
    await new Promise((r) => setTimeout(r, 20));
    for (const h of ev.handles) h.release();
    finished = true;
  });
  dma.onUnmap(() => {
    throw new Error("a broken listener");
  });
  await s.unmap(0x10000n, 0x1000n);
  t.ok(finished, "the unmap waited for the listener");
  t.ok(v.released);
  t.notOk(v.stale, "released by the device, not invalidated");
  await done();
});

t.test("an unmap waits for message DMA in flight and stops its remaining messages", async (t) => {
  const { s, port, dma, done } = setup();
  s.map({ iova: 0x10000n, size: 0x1000n, flags: RW, fd: -1, offset: 0n });
  port.delayMs = 30;
  const order: string[] = [];
  const reading = dma.read(0x10000n, 16).then(
    () => order.push("read done"),
    () => order.push("read failed"),
  );
  await new Promise((r) => setImmediate(r));
  t.equal(s.areas()[0]!.inflight, 1);
  await s.unmap(0x10000n, 0x1000n).then(() => order.push("unmapped"));
  await reading;
  t.same(order, ["read failed", "unmapped"], "the transfer settled before the unmap completed");
  t.equal(dma.lastFault?.kind, "unmapped", "a transfer cut short by an unmap is an unmapped fault");
  port.delayMs = 0;
  await done();
});

t.test("peer regions: mmapped, memory and trapped, with the region's cache attribute", async (t) => {
  const { s, dma, done } = setup();
  const writes: [number, number[]][] = [];
  const def = defineDevice({
    name: "peer-dev",
    summary: "peer",
    bus: "platform",
    regions: [
      { index: 0, name: "bar", size: 0x2000, memory: true, mmap: true, cache: "WC" },
      { index: 1, name: "regs", size: 0x100, accessSizes: [4], cache: "UC" },
      { index: 2, name: "plain", size: 0x1000, memory: true },
      { index: 3, name: "ro", size: 0x1000, memory: true, writable: false },
    ],
    irqs: [],
    create: () => ({
      regions: {
        1: {
          read: (offset) => offset,
          write: (offset, data) => {
            writes.push([offset, [...data]]);
          },
        },
      },
    }),
  });
  const peer = new Device(def, { dma: new DeviceDma(silentLogger), log: silentLogger });
  const registry = new PeerRegistry();
  const reg = registry.register("p0", peer);
  t.match(
    thrown(() => registry.register("p0", peer)),
    { errno: 17 },
  );
  t.match(
    thrown(() => registry.resolve("nope", 0)),
    { errno: 2 },
  );
  t.match(
    thrown(() => registry.resolve("p0", 9)),
    { errno: 2 },
  );

  const bar = s.mapPeer(0x8000_0000n, registry.resolve("p0", 0));
  const regs = s.mapPeer(0x9000_0000n, registry.resolve("p0", 1));
  s.mapPeer(0xa000_0000n, registry.resolve("p0", 2), RW, { offset: 0x800n, size: 0x100n });
  t.equal(bar.fd >= 0 && bar.fd !== peer.region(0)!.mmapFd, true, "the area owns a duplicate fd");
  t.match(
    thrown(() => s.mapPeer(0xb000_0000n, registry.resolve("p0", 3), RW)),
    { errno: 22 },
    "WRITE on a read-only region",
  );
  s.mapPeer(0xb000_0000n, registry.resolve("p0", 3), RO);
  t.match(
    thrown(() => s.mapPeer(0xc000_0000n, registry.resolve("p0", 2), RW, { offset: 0x1000n })),
    { errno: 22 },
  );
  t.match(
    thrown(() => s.mapPeer(0xc000_0000n, registry.resolve("p0", 2), RW, { size: 0x1001n })),
    { errno: 22 },
  );
  t.match(
    thrown(() => s.mapPeer(0xc000_0800n, registry.resolve("p0", 2))),
    { errno: 22 },
    "iova not page-aligned",
  );
  t.match(
    thrown(() => s.mapPeer(0x8000_0000n, registry.resolve("p0", 2))),
    { errno: 17 },
    "overlap",
  );

  // Mapped peer memory: zero-copy, WC.
  const v = dma.view(0x8000_0010n, 4, "write");
  t.equal(v.cache, "WC");
  v.bytes.set([1, 2, 3, 4]);
  t.same([...peer.region(0)!.memory!.subarray(0x10, 0x14)], [1, 2, 3, 4]);
  v.release();
  // Trapped registers: through the device, split into its 4-byte accesses, in order, UC.
  await dma.write(0x9000_0008n, bytes(1, 0, 0, 0, 2, 0, 0, 0));
  t.same(writes, [
    [8, [1, 0, 0, 0]],
    [12, [2, 0, 0, 0]],
  ]);
  t.same([...(await dma.read(0x9000_0010n, 4))], [0x10, 0, 0, 0]);
  t.match(
    thrown(() => dma.view(0x9000_0000n, 4)),
    { kind: "not-mappable" },
  );
  const odd = await dma.write(0x9000_0001n, bytes(1, 2)).catch((e) => e);
  t.equal(odd.kind, "transfer", "an access the region cannot decode is a transfer fault");
  t.same(
    dma.sg(0x9000_0000n, 8).segments.map((x) => [x.kind, x.cache, x.bytes]),
    [["peer", "UC", null]],
  );
  // A sub-range of a memory region without an mmap fd: viewed in place.
  await dma.write(0xa000_0000n, bytes(7));
  t.equal(peer.region(2)!.memory![0x800], 7);
  const pv = dma.view(0xa000_0000n, 1);
  t.equal(pv.cache, "WB");
  // The peer leaves: its areas go as if unmapped, views included.
  const told: bigint[] = [];
  dma.onUnmap((ev) => {
    told.push(ev.iova);
  });
  dma.sg(0x9000_0000n, 4); // left unreleased on purpose: the peer's going invalidates it
  reg.unregister();
  await s.unmapAll(); // waits for the background unmaps too
  t.same(told.sort(), [0x8000_0000n, 0x9000_0000n, 0xa000_0000n, 0xb000_0000n]);
  t.ok(pv.stale);
  t.equal(pv.bytes.length, 0);
  t.equal(dma.liveHandles, 0);
  t.equal(regs.state, "released");
  peer.dispose();
  await done();
});

t.test("a peer that is gone cannot be mapped; a late one answers unmapped", async (t) => {
  const { s, dma, done } = setup();
  const def = defineDevice({
    name: "gone",
    summary: "peer",
    bus: "platform",
    regions: [{ index: 0, name: "regs", size: 0x100 }],
    irqs: [],
    create: () => ({}),
  });
  const peer = new Device(def, { dma: new DeviceDma(silentLogger), log: silentLogger });
  const registry = new PeerRegistry();
  const reg = registry.register("g", peer);
  const target = registry.resolve("g", 0);
  reg.unregister();
  t.notOk(target.alive);
  t.match(
    thrown(() => s.mapPeer(0x1000n, target)),
    { errno: 2 },
  );
  t.equal((await dma.read(0x1000n, 1).catch((e) => e)).kind, "unmapped");
  peer.dispose();
  await done();
});

t.test("without a client every DMA is a no-client fault", async (t) => {
  const dma = new DeviceDma(silentLogger);
  t.equal((await dma.read(0n, 1).catch((e) => e)).kind, "no-client");
  t.equal((await dma.write(0n, bytes(1)).catch((e) => e)).kind, "no-client");
  t.match(
    thrown(() => dma.view(0n, 1)),
    { kind: "no-client" },
  );
  t.equal(dma.space, null);
});

t.test("fault logging is rate-limited", async (t) => {
  const sink = new MemorySink();
  const dma = new DeviceDma(new SinkLogger(sink, "debug"));
  for (let i = 0; i < 2048; i++) await dma.read(0n, 1).catch(() => {});
  t.equal(dma.faults, 2048);
  t.equal(sink.lines.length, 16 + 2, "the first 16, then one line per 1024");
  t.match(sink.lines.at(-1)!.line, /2048 DMA faults so far/);
});
