// Write combining seen from a client: the batch-end flush, SET_IRQS and DEVICE_RESET as flush
// points, REGION_WRITE_MULTI through the buffer (order across WC and UC entries, errors), the
// project's cache capability in DEVICE_GET_REGION_INFO, sparse mmap areas with views over a real
// socket, and the --no-mmap switch.
import t from "tap";
import { native } from "../../native/index.ts";
import {
  Command,
  Device,
  type DeviceFactory,
  decodeRegionInfoReply,
  defineDevice,
  encodeRegionInfo,
  encodeSetIrqs,
  IrqSetFlag,
  RegionCapId,
  RegionFlag,
  VFU_REGION_INFO_CAP_CACHE,
} from "../../src/index.ts";
import { memoryHarness, rawRequest, rejection, settle, socketHarness, u32 } from "../helpers/harness.ts";

type Call = [string, number, number[]];

/** 0 "fb": WC, trapped; 1 "regs": UC 4-byte registers; 2 "vram": WC memory, mmap areas with views
 * (the first page trapped, then a WC+UC area and a WB area); 3 "shadow": memory, mmap false. */
function factory(calls: Call[], devices: Device[] = []): DeviceFactory {
  const def = defineDevice({
    name: "wc-server-rig",
    summary: "write combining through a session",
    bus: "platform",
    regions: [
      { index: 0, name: "fb", size: 0x10000, cache: "WC" },
      { index: 1, name: "regs", size: 0x100, accessSizes: [4], cache: "UC" },
      {
        index: 2,
        name: "vram",
        size: 0x4000,
        memory: true,
        mmap: true,
        cache: "WC",
        mmapAreas: [
          { offset: 0x1000, size: 0x2000, views: ["WC", "UC"] },
          { offset: 0x3000, size: 0x1000, views: ["WB"] },
        ],
      },
      { index: 3, name: "shadow", size: 0x1000, memory: true, mmap: false },
    ],
    irqs: [{ index: 0, name: "irq", count: 1, kind: "edge" }],
    create: (ctx) => ({
      regions: {
        0: {
          write: (offset, data) => {
            calls.push(["fb", offset, [...data]]);
          },
          read: () => 0,
        },
        1: {
          write: (offset, data) => {
            calls.push(["regs", offset, [...data]]);
          },
          read: (offset) => offset,
        },
        2: {
          write: (offset, data) => {
            calls.push(["vram", offset, [...data]]);
            ctx.region(2).memory!.set(data, offset);
          },
        },
      },
      reset: () => {
        calls.push(["reset", 0, []]);
      },
    }),
  });
  return (dma, log) => {
    const d = new Device(def, { dma, log });
    devices.push(d);
    return d;
  };
}

t.test("posted 1-byte writes in one batch reach the handler as one write at the batch end", async (t) => {
  const calls: Call[] = [];
  const h = await memoryHarness({ factory: factory(calls) });
  // Sent in one go, so they arrive as one batch (one read of a socket would take them all).
  for (let i = 0; i < 64; i++) void h.client.regionWrite(0, 0x200 + i, Uint8Array.of(i), { posted: true });
  await settle();
  t.same(calls, [["fb", 0x200, Array.from({ length: 64 }, (_, i) => i)]]);
  const dev = h.session.device as Device;
  t.equal(dev.wcStats.flushes.batch, 1);
  t.equal(dev.wcStats.buffered, 64);
  await h.close();
});

t.test("a UC register write after WC writes finds them applied; UC writes keep their order", async (t) => {
  const calls: Call[] = [];
  const h = await memoryHarness({ factory: factory(calls) });
  for (let i = 0; i < 4; i++) void h.client.regionWrite(0, i, Uint8Array.of(0x10 + i), { posted: true });
  void h.client.regionWrite32(1, 0, 1, { posted: true });
  void h.client.regionWrite32(1, 4, 2, { posted: true });
  void h.client.regionWrite(0, 4, Uint8Array.of(0x14), { posted: true });
  await h.client.regionWrite32(1, 0, 3);
  t.same(calls, [
    ["fb", 0, [0x10, 0x11, 0x12, 0x13]],
    ["regs", 0, [1, 0, 0, 0]],
    ["regs", 4, [2, 0, 0, 0]],
    ["fb", 4, [0x14]],
    ["regs", 0, [3, 0, 0, 0]],
  ]);
  await h.close();
});

t.test("flush point: SET_IRQS", async (t) => {
  const calls: Call[] = [];
  const devices: Device[] = [];
  const h = await memoryHarness({ factory: factory(calls, devices) });
  void h.client.regionWrite(0, 8, Uint8Array.of(1), { posted: true });
  const setIrqs = encodeSetIrqs({
    argsz: 20,
    flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER,
    index: 0,
    start: 0,
    count: 1,
    data: null,
  });
  // Both in one batch: the write is pending until SET_IRQS flushes it, before the batch end.
  h.client.post(Command.DEVICE_SET_IRQS, setIrqs);
  await settle();
  t.same(calls, [["fb", 8, [1]]]);
  t.equal(devices[0]!.wcStats.flushes.irq, 1, "flushed by SET_IRQS, not by the batch end");
  t.equal(devices[0]!.wcStats.flushes.batch, 0);
  await h.close();
});

t.test("flush point: DEVICE_RESET delivers pending writes before the model resets", async (t) => {
  const calls: Call[] = [];
  const h = await memoryHarness({ factory: factory(calls) });
  void h.client.regionWrite(0, 0, Uint8Array.of(7), { posted: true });
  await h.client.reset();
  t.same(calls, [
    ["fb", 0, [7]],
    ["reset", 0, []],
  ]);
  await h.close();
});

t.test("REGION_WRITE_MULTI: entries in order through the buffer, WC and UC mixed", async (t) => {
  const calls: Call[] = [];
  const h = await memoryHarness({ factory: factory(calls) });
  const wc = (offset: number, v: number) => ({
    offset: BigInt(offset),
    region: 0,
    count: 1,
    data: Uint8Array.of(v),
  });
  const uc = (offset: number, v: number) => ({ offset: BigInt(offset), region: 1, count: 4, data: u32(v) });
  const n = await h.client.writeMulti([
    wc(0, 1),
    wc(1, 2),
    wc(2, 3),
    uc(0, 9),
    wc(3, 4),
    wc(4, 5),
    uc(4, 8),
    wc(5, 6),
  ]);
  t.equal(n, 8n);
  t.same(calls, [
    ["fb", 0, [1, 2, 3]],
    ["regs", 0, [9, 0, 0, 0]],
    ["fb", 3, [4, 5]],
    ["regs", 4, [8, 0, 0, 0]],
    ["fb", 5, [6]],
  ]);
  await h.close();
});

t.test("REGION_WRITE_MULTI: the first failing entry stops the message with its errno", async (t) => {
  const calls: Call[] = [];
  const h = await memoryHarness({ factory: factory(calls) });
  const entries = [
    { offset: 0n, region: 0, count: 1, data: Uint8Array.of(1) },
    { offset: 0n, region: 1, count: 4, data: u32(2) },
    { offset: 0n, region: 1, count: 2, data: Uint8Array.of(3, 3) }, // undeclared width
    { offset: 1n, region: 0, count: 1, data: Uint8Array.of(4) },
    { offset: 8n, region: 1, count: 4, data: u32(5) },
  ];
  t.equal(await rejection(h.client.writeMulti(entries)), 22);
  await settle();
  t.same(calls, [
    ["fb", 0, [1]],
    ["regs", 0, [2, 0, 0, 0]],
  ]);
  // Posted: never answered, the same entries applied, and the session goes on.
  calls.length = 0;
  await h.client.writeMulti(entries, { posted: true });
  t.equal(await h.client.regionRead32(1, 0x10), 0x10);
  t.same(calls, [
    ["fb", 0, [1]],
    ["regs", 0, [2, 0, 0, 0]],
  ]);
  t.equal(h.client.unexpected.length, 0, "no reply to the posted message");
  await h.close();
});

t.test(
  "the cache capability: decoded by our client, skipped by one that knows only VFIO's ids",
  async (t) => {
    const h = await memoryHarness({ factory: factory([]) });
    const fb = await h.client.getRegionInfo(0);
    t.same(fb.cache, { cache: "WC", combines: true, views: [] }, "a trapped WC region");
    t.equal(fb.fd, null);
    const regs = await h.client.getRegionInfo(1);
    t.equal(regs.cache, null, "a plain UC register region carries no capability");
    t.equal(regs.caps.length, 0);

    const vram = await h.client.getRegionInfo(2);
    t.ok(vram.flags & RegionFlag.MMAP);
    t.ok(vram.fd !== null);
    native.close(vram.fd!);
    t.same(vram.caps[0], {
      id: RegionCapId.SPARSE_MMAP,
      version: 1,
      areas: [
        { offset: 0x1000n, size: 0x2000n },
        { offset: 0x3000n, size: 0x1000n },
      ],
    });
    t.same(vram.cache, {
      cache: "WC",
      combines: true,
      views: [
        { offset: 0x1000n, size: 0x2000n, cookie: 0x1000n, cache: "WC", isDefault: true, area: 0 },
        { offset: 0x1000n, size: 0x2000n, cookie: 0x1000n, cache: "UC", isDefault: false, area: 0 },
        { offset: 0x3000n, size: 0x1000n, cookie: 0x3000n, cache: "WB", isDefault: true, area: 1 },
      ],
    });

    // A client that knows only VFIO's capability ids: the argsz retry, then the chain by `next`.
    const ask = (argsz: number) =>
      rawRequest(
        h.client,
        Command.DEVICE_GET_REGION_INFO,
        encodeRegionInfo({ argsz, flags: 0, index: 2, capOffset: 0, size: 0n, offset: 0n }),
      );
    const first = await ask(32);
    t.equal(first.fds.length, 0, "no fd before the caps fit");
    const short = decodeRegionInfoReply(first.body);
    t.equal(short.argsz, 32 + 48 + 16 + 3 * 32, "argsz = 32 + SPARSE_MMAP (2 areas) + cache cap (3 views)");
    t.equal(short.flags & RegionFlag.CAPS, 0);
    t.equal(first.body.length, 32);
    const full = await ask(short.argsz);
    t.equal(full.fds.length, 1);
    native.close(full.fds[0]!);
    const body = full.body;
    const dv = new DataView(body.buffer, body.byteOffset, body.length);
    // Walk the chain as a VFIO client does: find SPARSE_MMAP, ignore any other id.
    const known = [1, 2, 3];
    let at = dv.getUint32(12, true);
    const seen: number[] = [];
    let areas: [number, number][] = [];
    while (at !== 0) {
      const id = dv.getUint16(at, true);
      seen.push(id);
      if (known.includes(id) && id === 1) {
        const nr = dv.getUint32(at + 8, true);
        areas = Array.from({ length: nr }, (_, i) => [
          Number(dv.getBigUint64(at + 16 + 16 * i, true)),
          Number(dv.getBigUint64(at + 24 + 16 * i, true)),
        ]);
      }
      at = dv.getUint32(at + 4, true);
    }
    t.same(seen, [RegionCapId.SPARSE_MMAP, VFU_REGION_INFO_CAP_CACHE]);
    t.same(areas, [
      [0x1000, 0x2000],
      [0x3000, 0x1000],
    ]);
    await h.close();
  },
);

t.test("mmap views over a real socket share bytes both ways; the trapped page stays trapped", async (t) => {
  const calls: Call[] = [];
  const devices: Device[] = [];
  const h = await socketHarness({ factory: factory(calls, devices) });
  const client = await h.connect();
  const dev = devices[0]!;
  const mem = dev.region(2)!.memory!;
  const wcView = await client.mmapView(2);
  t.equal(wcView.cache, "WC");
  t.equal(wcView.offset, 0x1000);
  t.equal(wcView.bytes.length, 0x2000);
  const ucView = await client.mmapView(2, { cache: "UC" });
  const wbView = await client.mmapView(2, { area: 1 });
  t.equal(wbView.cache, "WB");
  t.equal(await rejection(client.mmapView(2, { cache: "WB" })), 22, "area 0 has no WB view");
  t.equal(await rejection(client.mmapView(0)), 22, "a trapped region has no fd");

  wcView.bytes.set([1, 2, 3, 4], 0x10);
  t.same([...mem.subarray(0x1010, 0x1014)], [1, 2, 3, 4], "client store → device memory");
  t.same([...ucView.bytes.subarray(0x10, 0x14)], [1, 2, 3, 4], "the UC view maps the same bytes");
  mem.set([9, 8, 7], 0x3020);
  t.same([...wbView.bytes.subarray(0x20, 0x23)], [9, 8, 7], "device store → client mapping");
  t.equal(calls.length, 0, "mapped accesses run no handler");

  // The page outside every area: REGION_WRITE through the handler, combined.
  void client.regionWrite(2, 0x10, Uint8Array.of(5), { posted: true });
  void client.regionWrite(2, 0x11, Uint8Array.of(6), { posted: true });
  t.same([...(await client.regionRead(2, 0x10, 2))], [5, 6]);
  t.same(calls, [["vram", 0x10, [5, 6]]]);
  for (const v of [wcView, ucView, wbView]) native.unmap(v.bytes.buffer as ArrayBuffer);
  client.close();
  await h.close();
});

t.test(
  "mmap false, and the --no-mmap switch: no MMAP flag, no fd, fully trapped, still working",
  async (t) => {
    const calls: Call[] = [];
    const devices: Device[] = [];
    const h = await memoryHarness({ factory: factory(calls, devices) });
    const shadow = await h.client.getRegionInfo(3);
    t.equal(shadow.flags & RegionFlag.MMAP, 0);
    t.equal(shadow.fd, null);
    await h.client.regionWrite(3, 0x40, Uint8Array.of(1, 2, 3));
    t.same([...devices[0]!.region(3)!.memory!.subarray(0x40, 0x43)], [1, 2, 3]);
    t.same([...(await h.client.regionRead(3, 0x41, 2))], [2, 3]);
    await h.close();

    const n = await memoryHarness({ factory: factory(calls, devices), server: { mmap: false } });
    const vram = await n.client.getRegionInfo(2);
    t.equal(vram.flags & RegionFlag.MMAP, 0, "not offered for mmap");
    t.equal(vram.fd, null);
    t.same(
      vram.caps.map((c) => c.id),
      [VFU_REGION_INFO_CAP_CACHE],
      "no SPARSE_MMAP",
    );
    t.same(vram.cache, { cache: "WC", combines: true, views: [] }, "and no views");
    await n.client.regionWrite(2, 0x1000, Uint8Array.of(4, 5));
    t.same([...(await n.client.regionRead(2, 0x1000, 2))], [4, 5], "the mappable areas are trapped instead");
    await n.close();
  },
);

t.test(
  "the client's combining writer: WC stores leave merged, UC regions are refused, order holds",
  async (t) => {
    const calls: Call[] = [];
    const devices: Device[] = [];
    const h = await memoryHarness({ factory: factory(calls, devices) });
    t.equal(await rejection(h.client.combiningWriter(1)), 22, "UC: stores must go one by one");
    const w = await h.client.combiningWriter(0, { limit: 16 });
    for (let i = 0; i < 8; i++) w.write(i, Uint8Array.of(i));
    t.equal(w.pending, 8);
    await h.client.regionWrite32(1, 0, 0xaa); // flushes the writer first
    t.equal(w.messages, 1);
    t.same(calls, [
      ["fb", 0, [0, 1, 2, 3, 4, 5, 6, 7]],
      ["regs", 0, [0xaa, 0, 0, 0]],
    ]);
    for (let i = 0; i < 20; i++) w.write(0x100 + i, Uint8Array.of(i)); // passes the 16-byte limit
    w.write(0x400, Uint8Array.of(1)); // not adjacent
    await settle(); // the end of the microtask turn sends the rest
    await settle();
    t.equal(w.messages, 4);
    t.equal(devices[0]!.wcStats.buffered, 4, "four REGION_WRITEs reached the server");
    t.same(
      calls.slice(2).map((c) => [c[0], c[1], c[2].length]),
      [
        ["fb", 0x100, 20],
        ["fb", 0x400, 1],
      ],
      "and the server merged the two adjacent ones again",
    );
    await h.close();
  },
);

t.test(
  "over a real socket, the end of a read's batch flushes posted writes with no read to force it",
  async (t) => {
    const calls: Call[] = [];
    const devices: Device[] = [];
    const h = await socketHarness({ factory: factory(calls, devices) });
    const client = await h.connect();
    for (let i = 0; i < 32; i++) void client.regionWrite(0, 0x40 + i, Uint8Array.of(i), { posted: true });
    for (let tries = 0; tries < 200 && calls.reduce((n, c) => n + c[2].length, 0) < 32; tries++)
      await settle();
    t.same(
      calls.flatMap((c) => c[2]),
      Array.from({ length: 32 }, (_, i) => i),
      "every byte delivered, in order",
    );
    t.ok(calls.length <= 2, `combined (${calls.length} handler calls for 32 stores)`);
    t.equal(devices[0]!.wcStats.flushes.batch, calls.length, "each delivered by a batch end");
    t.equal(devices[0]!.wcStats.flushes.read, 0);
    client.close();
    await h.close();
  },
);
