// The write-combining buffer in the device layer: which writes merge, every flush point, UC order,
// order across regions, asynchronous handlers, the buffer limit at its exact boundary, and the
// declaration errors of memory-backed regions with mmap areas and views.
import t from "tap";
import {
  Device,
  type DeviceContext,
  DeviceDma,
  defineDevice,
  definePciDevice,
  MemorySink,
  PciDevice,
  type RegionSpec,
  SinkLogger,
  silentLogger,
  WC_BUFFER_BYTES,
} from "../../src/index.ts";

type Call = [string, number, number, number[]]; // [region name, offset, length, bytes]

interface Rig {
  device: Device;
  calls: Call[];
  ctx: DeviceContext;
  irqTotal(): number;
  sink: MemorySink;
}

/** A platform device: 0 WC registers (trapped), 1 UC registers, 2 WC second region, 3 WB memory,
 * 4 memory with no cache declared. Every write handler records [name, offset, length, bytes]. */
function rig(
  opts: { wcBufferBytes?: number; asyncWc?: (c: Call) => Promise<void>; throwWc?: boolean } = {},
): Rig {
  const calls: Call[] = [];
  let ctx!: DeviceContext;
  const record = (name: string) => (offset: number, data: Uint8Array) => {
    const c: Call = [name, offset, data.length, [...data]];
    calls.push(c);
    if (name.startsWith("wc") && opts.throwWc) throw new Error("framebuffer on fire");
    if (name.startsWith("wc") && opts.asyncWc) return opts.asyncWc(c);
  };
  const def = defineDevice({
    name: "wc-rig",
    summary: "write-combining test rig",
    bus: "platform",
    regions: [
      { index: 0, name: "wc0", size: 0x10000, cache: "WC" },
      { index: 1, name: "uc", size: 0x100, accessSizes: [4], cache: "UC" },
      { index: 2, name: "wc2", size: 0x1000, cache: "WC" },
      { index: 3, name: "wb", size: 0x1000, memory: true, cache: "WB" },
      { index: 4, name: "plain", size: 0x1000, memory: true },
    ],
    irqs: [{ index: 0, name: "irq", count: 1, kind: "edge" }],
    create: (c) => {
      ctx = c;
      return {
        regions: {
          0: { write: record("wc0"), read: () => 0 },
          1: { write: record("uc"), read: () => 0 },
          2: { write: record("wc2"), read: () => 0 },
          3: { write: record("wb") },
          4: { write: record("plain") },
        },
      };
    },
  });
  const sink = new MemorySink();
  const log = new SinkLogger(sink, "debug");
  const device = new Device(def, { dma: new DeviceDma(log), log, wcBufferBytes: opts.wcBufferBytes });
  const irqTotal = () => {
    const c = device.irqs.counters(0, 0);
    return c.signalled + c.latched + c.dropped;
  };
  return { device, calls, ctx, irqTotal, sink };
}

const w = (d: Device, region: number, offset: number, ...bytes: number[]) =>
  d.write(region, BigInt(offset), Uint8Array.from(bytes));

t.test("adjacent 1-byte writes to a WC region reach the handler as one write", async (t) => {
  const { device, calls } = rig();
  for (let i = 0; i < 16; i++) t.equal(w(device, 0, 0x100 + i, i), undefined, "buffered, synchronous");
  t.same(calls, [], "nothing delivered before a flush point");
  device.fence();
  t.same(calls, [["wc0", 0x100, 16, Array.from({ length: 16 }, (_, i) => i)]]);
  t.equal(device.wcStats.buffered, 16);
  t.equal(device.wcStats.delivered, 1);
  t.equal(device.wcStats.flushes.fence, 1);
  device.dispose();
});

t.test("overlapping writes merge with the later bytes winning; a descending fill merges too", async (t) => {
  const { device, calls } = rig();
  w(device, 0, 0x10, 1, 2, 3, 4);
  w(device, 0, 0x12, 9, 9, 9, 9); // overlaps the tail and extends it
  w(device, 0, 0x0c, 7, 7, 7, 7); // just before the run
  w(device, 0, 0x0e, 5); // inside
  device.fence();
  t.same(calls, [["wc0", 0x0c, 10, [7, 7, 5, 7, 1, 2, 9, 9, 9, 9]]]);
  device.dispose();
});

t.test("a write that does not touch the run flushes it first", async (t) => {
  const { device, calls } = rig();
  w(device, 0, 0, 1);
  w(device, 0, 1, 2);
  w(device, 0, 3, 3); // a one-byte gap
  t.same(calls, [["wc0", 0, 2, [1, 2]]], "the run before the gap went first");
  w(device, 2, 3, 4); // same offset, another WC region: not combinable either
  t.same(calls, [
    ["wc0", 0, 2, [1, 2]],
    ["wc0", 3, 1, [3]],
  ]);
  device.fence();
  t.same(calls.at(-1), ["wc2", 3, 1, [4]]);
  t.equal(device.wcStats.flushes.gap, 2);
  device.dispose();
});

t.test("flush point: a read of that region (a read of another WC region does not flush)", async (t) => {
  const { device, calls } = rig();
  w(device, 0, 0, 1, 2);
  device.read(2, 0n, 4);
  t.same(calls, [], "a read of another WC region leaves the run pending");
  device.read(0, 0x800n, 1);
  t.same(calls, [["wc0", 0, 2, [1, 2]]]);
  t.equal(device.wcStats.flushes.read, 1);
  device.dispose();
});

t.test(
  "flush point: any access to a UC region; UC writes are never combined and stay in order",
  async (t) => {
    const { device, calls } = rig();
    w(device, 0, 0, 1);
    w(device, 0, 1, 2);
    w(device, 1, 0, 0xa, 0, 0, 0);
    w(device, 1, 4, 0xb, 0, 0, 0);
    w(device, 1, 8, 0xc, 0, 0, 0);
    w(device, 0, 2, 3);
    device.read(1, 0n, 4);
    t.same(calls, [
      ["wc0", 0, 2, [1, 2]],
      ["uc", 0, 4, [0xa, 0, 0, 0]],
      ["uc", 4, 4, [0xb, 0, 0, 0]],
      ["uc", 8, 4, [0xc, 0, 0, 0]],
      ["wc0", 2, 1, [3]],
    ]);
    t.equal(device.wcStats.flushes.uncached, 2, "the UC write and the UC read each flushed once");
    device.dispose();
  },
);

t.test("a region without a declared cache attribute is not combined, even memory-backed", async (t) => {
  const { device, calls } = rig();
  w(device, 4, 0, 1);
  w(device, 4, 1, 2);
  t.same(calls, [
    ["plain", 0, 1, [1]],
    ["plain", 1, 1, [2]],
  ]);
  t.equal(device.region(4)!.cache, "WB", "reported WB (memory) but delivered strictly");
  device.dispose();
});

t.test("WB regions combine like WC ones", async (t) => {
  const { device, calls } = rig();
  w(device, 3, 8, 1);
  w(device, 3, 9, 2);
  t.same(calls, []);
  device.fence();
  t.same(calls, [["wb", 8, 2, [1, 2]]]);
  device.dispose();
});

t.test("flush point: an interrupt the model raises is delivered after the writes before it", async (t) => {
  const { device, calls, ctx, irqTotal } = rig();
  w(device, 0, 0, 1);
  w(device, 0, 1, 2);
  t.equal(irqTotal(), 0);
  ctx.irq.raise(0);
  t.same(calls, [["wc0", 0, 2, [1, 2]]], "flushed by the interrupt");
  t.equal(irqTotal(), 1, "and the interrupt delivered");
  w(device, 0, 2, 3);
  ctx.irq.setLevel(0, 0, true);
  t.same(calls.at(-1), ["wc0", 2, 1, [3]], "setLevel flushes too");
  t.equal(device.wcStats.flushes.irq, 2);
  device.dispose();
});

t.test("flush point: ctx.fence() and device.fence()", async (t) => {
  const { device, calls, ctx } = rig();
  w(device, 0, 0, 1);
  ctx.fence();
  t.same(calls, [["wc0", 0, 1, [1]]]);
  w(device, 0, 1, 2);
  device.fence();
  t.same(calls.at(-1), ["wc0", 1, 1, [2]]);
  t.equal(device.fence(), undefined, "an empty buffer is a no-op");
  t.equal(device.wcStats.flushes.fence, 2);
  device.dispose();
});

t.test("flush point: the buffer filling, at the limit exactly", async (t) => {
  const { device, calls } = rig();
  t.equal(WC_BUFFER_BYTES, 4096);
  const n = WC_BUFFER_BYTES / 4;
  for (let i = 0; i < n - 1; i++) w(device, 0, 4 * i, 1, 2, 3, 4);
  t.same(calls, [], `${WC_BUFFER_BYTES - 4} bytes stay pending`);
  w(device, 0, 4 * (n - 1), 1, 2, 3, 4);
  t.equal(calls.length, 1, "the write that makes the run exactly the limit delivers it");
  t.same(calls[0]!.slice(0, 3), ["wc0", 0, WC_BUFFER_BYTES]);
  t.equal(device.wcStats.flushes.full, 1);
  w(device, 0, WC_BUFFER_BYTES, 5);
  t.equal(calls.length, 1, "the next byte starts a new run");
  device.fence();
  t.same(calls[1], ["wc0", WC_BUFFER_BYTES, 1, [5]]);
  device.dispose();
});

t.test("a write that would pass the limit flushes first; a write over the limit goes alone", async (t) => {
  const { device, calls } = rig({ wcBufferBytes: 16 });
  for (let i = 0; i < 14; i++) w(device, 0, i, i);
  w(device, 0, 14, 0xe, 0xf, 0x10, 0x11); // 18 bytes would not fit
  t.same(
    calls.map((c) => c.slice(0, 3)),
    [["wc0", 0, 14]],
  );
  w(device, 0, 0x100, ...new Array(17).fill(7));
  t.same(
    calls.map((c) => c.slice(0, 3)),
    [
      ["wc0", 0, 14],
      ["wc0", 14, 4],
      ["wc0", 0x100, 17],
    ],
    "the pending run, then the long write on its own",
  );
  device.dispose();
});

t.test("DEVICE_RESET flushes before the reset; a disconnect drops what is pending", async (t) => {
  const { device, calls } = rig();
  w(device, 0, 0, 1);
  await device.reset();
  t.same(calls, [["wc0", 0, 1, [1]]]);
  t.equal(device.wcStats.flushes.reset, 1);
  w(device, 0, 5, 2);
  await device.disconnect();
  t.equal(calls.length, 1, "not delivered");
  t.equal(device.wcStats.droppedBytes, 1);
  device.fence();
  t.equal(calls.length, 1, "and gone");
  device.dispose();
});

t.test("asynchronous WC handlers: later accesses, interrupts and UC writes wait for them", async (t) => {
  const resolvers: (() => void)[] = [];
  const r = rig({
    asyncWc: () =>
      new Promise<void>((resolve) => {
        resolvers.push(resolve);
      }),
  });
  const { device, calls, ctx, irqTotal } = r;
  w(device, 0, 0, 1);
  w(device, 0, 1, 2);
  const fenced = device.fence();
  t.ok(fenced instanceof Promise, "an asynchronous delivery returns a promise");
  w(device, 0, 2, 3); // joins the queue behind the delivery
  ctx.irq.raise(0);
  const uc = w(device, 1, 0, 9, 0, 0, 0);
  t.ok(uc instanceof Promise);
  t.same(calls, [["wc0", 0, 2, [1, 2]]], "only the first run is with its handler");
  t.equal(irqTotal(), 0, "the interrupt waits");
  resolvers.shift()!();
  await fenced;
  await new Promise((res) => setImmediate(res));
  t.same(
    calls.map((c) => c.slice(0, 3)),
    [
      ["wc0", 0, 2],
      ["wc0", 2, 1],
    ],
    "the interrupt flushed the write that queued behind",
  );
  t.equal(irqTotal(), 0, "the interrupt still waits for that second delivery");
  resolvers.shift()!();
  await uc;
  t.equal(irqTotal(), 1);
  t.same(calls.at(-1), ["uc", 0, 4, [9, 0, 0, 0]], "the UC write came last");
  device.dispose();
});

t.test("a failing combined write is logged and counted, never thrown at the flush point", async (t) => {
  const { device, calls, sink } = rig({ throwWc: true });
  w(device, 0, 0, 1);
  t.doesNotThrow(() => device.read(1, 0n, 4));
  t.equal(calls.length, 1);
  t.equal(device.wcStats.failed, 1);
  t.match(sink.text(), /combined write \[0x0, \+1\) to region wc0 failed: framebuffer on fire/);
  device.dispose();
});

t.test("PCI: config space accesses flush; a WC BAR cannot hold the MSI-X table", async (t) => {
  const calls: Call[] = [];
  const ids = {
    vendor: 0x1234,
    device: 0x1111,
    subsystemVendor: 0,
    subsystem: 0,
    classCode: 0x030000,
    revision: 0,
  };
  const def = definePciDevice({
    name: "wc-pci",
    summary: "a framebuffer BAR",
    ids,
    bars: [
      { index: 0, kind: "memory", size: 0x10000, prefetchable: true, memory: true, cache: "WC" },
      { index: 2, kind: "memory", size: 0x1000, accessSizes: [4] },
    ],
    create: () => ({
      bars: {
        0: {
          write: (offset, data) => {
            calls.push(["fb", offset, data.length, [...data]]);
          },
        },
        2: {
          write: (offset, data) => {
            calls.push(["regs", offset, data.length, [...data]]);
          },
        },
      },
    }),
  });
  const dev = new PciDevice(def, { dma: new DeviceDma(silentLogger), log: silentLogger });
  dev.write(0, 0n, Uint8Array.of(1, 2));
  dev.write(0, 2n, Uint8Array.of(3, 4));
  dev.read(7, 0n, 4); // vendor/device ID
  t.same(calls, [["fb", 0, 4, [1, 2, 3, 4]]], "a config read flushed the framebuffer run");
  dev.write(0, 4n, Uint8Array.of(5));
  dev.write(7, 4n, Uint8Array.of(0x6, 0)); // Command: memory + bus master
  t.same(calls.at(-1), ["fb", 4, 1, [5]], "a config write flushed it");
  t.equal(dev.wcStats.flushes.uncached, 2);
  dev.dispose();
  t.throws(
    () =>
      definePciDevice({
        name: "wc-msix",
        summary: "x",
        ids,
        bars: [{ index: 0, kind: "memory", size: 0x4000, cache: "WC" }],
        capabilities: { msix: { vectors: 4, bar: 0 } },
        create: () => ({}),
      }),
    /BAR 0 \(bar0\): holds the MSI-X table or PBA, so it cannot be WC/,
  );
});

t.test("mmap areas and views are validated with errors naming the region", async (t) => {
  const make = (spec: Partial<RegionSpec>) =>
    new Device(
      defineDevice({
        name: "areas",
        summary: "x",
        bus: "platform",
        regions: [{ index: 0, name: "fb", size: 0x4000, memory: true, mmap: true, ...spec }],
        irqs: [],
        create: () => ({}),
      }),
      { dma: new DeviceDma(silentLogger), log: silentLogger },
    );
  const bad: [Partial<RegionSpec>, RegExp][] = [
    [{ memory: false }, /region fb: mmap needs memory: true/],
    [{ mmap: false, mmapAreas: [{ offset: 0, size: 0x1000 }] }, /region fb: mmapAreas needs mmap: true/],
    [{ mmapAreas: [] }, /region fb: mmapAreas is empty/],
    [
      { mmapAreas: [{ offset: 0x800, size: 0x1000 }] },
      /region fb: mmapAreas\[0\]: offset 2048 is not a multiple of 4096/,
    ],
    [
      { mmapAreas: [{ offset: 0, size: 0x1800 }] },
      /mmapAreas\[0\]: size 6144 is not a non-zero multiple of 4096/,
    ],
    [{ mmapAreas: [{ offset: 0x3000, size: 0x2000 }] }, /mmapAreas\[0\]: .* ends past the region/],
    [
      {
        mmapAreas: [
          { offset: 0x2000, size: 0x2000 },
          { offset: 0, size: 0x3000 },
        ],
      },
      /region fb: mmap areas at 0x0 and 0x2000 overlap/,
    ],
    [{ mmapAreas: [{ offset: 0, size: 0x1000, views: [] }] }, /mmapAreas\[0\]: views is empty/],
    [{ mmapAreas: [{ offset: 0, size: 0x1000, views: ["WC", "WC"] }] }, /views repeat an attribute/],
    [{ mmapAreas: [{ offset: 0, size: 0x1000, views: ["XX" as "WC"] }] }, /view XX is not UC, WC or WB/],
    [{ cache: "XX" as "WC" }, /region fb: cache XX is not UC, WC or WB/],
  ];
  for (const [spec, re] of bad) t.throws(() => make(spec), re, re.source);
  const ok = make({
    cache: "WC",
    mmapAreas: [
      { offset: 0x2000, size: 0x2000, views: ["WC", "UC"] },
      { offset: 0, size: 0x1000 },
    ],
  });
  const r = ok.region(0)!;
  t.same(r.mmapAreas, [
    { offset: 0, size: 0x1000, views: ["WC"] },
    { offset: 0x2000, size: 0x2000, views: ["WC", "UC"] },
  ]);
  t.same(
    r.mmapViews().map((v) => [v.area, v.offset, v.cache, v.cookie, v.isDefault]),
    [
      [0, 0, "WC", 0, true],
      [1, 0x2000, "WC", 0x2000, true],
      [1, 0x2000, "UC", 0x2000, false],
    ],
  );
  ok.dispose();
});
