// Over real UNIX sockets: many devices in one process, disconnects, a second client, fd hygiene.
import { statSync } from "node:fs";
import path from "node:path";
import t from "tap";
import { Reg } from "../../devices/scratchpad/index.ts";
import { VfioUserClient } from "../../src/index.ts";
import { openFdCount } from "../../src/util/fds.ts";
import { deviceFactory, rejection, settle, socketHarness } from "../helpers/harness.ts";

t.test("200 connect/map/disconnect cycles leave the server's open-fd count where it started", async (t) => {
  const h = await socketHarness();
  // Warm up once so lazily created resources exist before the count is taken.
  const warm = await h.connect();
  await warm.mapMemory(0x100000n, 0x10000);
  warm.close();
  await h.endpoint.session?.ended;
  await settle();
  const before = openFdCount();
  for (let i = 0; i < 200; i++) {
    const c = await h.connect();
    await c.mapMemory(0x100000n, 0x10000);
    await c.enableInterrupts(0, 0, 2);
    await c.regionWrite32(0, Reg.SCRATCH, i);
    const s = h.endpoint.session!;
    c.close();
    await s.ended;
  }
  await settle();
  t.equal(openFdCount(), before);
  t.equal(h.endpoint.sessionsServed, 201);
  await h.close();
});

t.test(
  "over a real socket, a memfd DMA-mapped by the client is shared: each side sees the other's bytes",
  async (t) => {
    const h = await socketHarness();
    const c = await h.connect();
    const mem = await c.mapMemory(0x200000n, 0x4000);
    const [done] = await c.enableInterrupts(0, 3, 1);
    const dmaTo = async (addr: number, len: number, cmd: number) => {
      await c.regionWrite32(0, Reg.DMA_ADDR_LO, addr);
      await c.regionWrite32(0, Reg.DMA_ADDR_HI, 0);
      await c.regionWrite32(0, Reg.DMA_LEN, len);
      await c.regionWrite32(0, Reg.DMA_CMD, cmd);
      await c.waitForInterrupt(done!);
      return c.regionRead32(0, Reg.DMA_STATUS);
    };
    mem.bytes.set([0xde, 0xad, 0xbe, 0xef], 0x10);
    t.equal(await dmaTo(0x200010, 4, 1), 2, "device read the client's bytes");
    const devMem = h.endpoint.device.region(1)!.memory!;
    t.same([...devMem.subarray(0, 4)], [0xde, 0xad, 0xbe, 0xef]);
    devMem.set([1, 2, 3], 0);
    t.equal(await dmaTo(0x203000, 3, 2), 2, "device wrote the client's memory");
    t.same([...mem.bytes.subarray(0x3000, 0x3003)], [1, 2, 3]);
    c.close();
    await h.close();
  },
);

t.test(
  "a disconnect releases the client's maps and fds and resets the device for the next client",
  async (t) => {
    const h = await socketHarness();
    const c1 = await h.connect();
    await c1.regionWrite32(0, Reg.SCRATCH, 77);
    await c1.mapMemory(0x1000n, 0x1000);
    await c1.enableInterrupts(0, 0, 4);
    const s1 = h.endpoint.session!;
    c1.close();
    await s1.ended;
    t.equal(s1.space.count, 0, "maps gone");
    t.equal(h.endpoint.device.irqs.heldFds().length, 0, "interrupt fds closed");
    const c2 = await h.connect();
    t.equal(await c2.regionRead32(0, Reg.SCRATCH), 0, "device reset");
    c2.close();
    await h.close();
  },
);

t.test("a second client while one is connected gets EBUSY and is closed; the first goes on", async (t) => {
  const h = await socketHarness();
  const first = await h.connect();
  t.equal(await rejection(h.connect()), 16, "EBUSY");
  t.match(h.sink.text(), /refusing a second client/);
  t.equal(await first.regionRead32(0, Reg.ID), 0x56465531);
  first.close();
  await h.endpoint.session?.ended;
  const third = await h.connect();
  t.equal(await third.regionRead32(0, Reg.ID), 0x56465531, "served once the first left");
  third.close();
  await h.close();
});

t.test("several devices in one process, each on its own socket, with its own state", async (t) => {
  const h = await socketHarness();
  const other = h.server.listen(deviceFactory(), { socketPath: path.join(h.dir, "second.sock") });
  const a = await h.connect();
  const b = await VfioUserClient.connect(other.socketPath);
  await a.regionWrite32(0, Reg.SCRATCH, 1);
  await b.regionWrite32(0, Reg.SCRATCH, 2);
  t.equal(await a.regionRead32(0, Reg.SCRATCH), 1);
  t.equal(await b.regionRead32(0, Reg.SCRATCH), 2);
  a.close();
  t.equal(await b.regionRead32(0, Reg.SCRATCH), 2, "the other device is unaffected by a disconnect");
  b.close();
  await h.close();
});

t.test("the socket file is created with mode 0600 unless configured", async (t) => {
  const h = await socketHarness();
  t.equal(statSync(h.socketPath).mode & 0o777, 0o600);
  const open = h.server.listen(deviceFactory(), { socketPath: path.join(h.dir, "open.sock"), mode: 0o660 });
  t.equal(statSync(open.socketPath).mode & 0o777, 0o660);
  await h.close();
});
