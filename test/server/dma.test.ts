// DMA_MAP and DMA_UNMAP through the client: shared memory both ways, and every refusal's errno.

import t from "tap";
import { Reg } from "../../devices/scratchpad/index.ts";
import { native } from "../../native/index.ts";
import { U64_MAX } from "../../protocol/index.ts";
import { Command, DmaMapFlag, DmaUnmapFlag, encodeDmaMap, encodeDmaUnmap } from "../../src/index.ts";
import { openFdCount } from "../../src/util/fds.ts";
import { memoryHarness, rawRequest, replyErrno, settle } from "../helpers/harness.ts";

const RW = DmaMapFlag.READ | DmaMapFlag.WRITE;

async function dmaThroughDevice(
  h: Awaited<ReturnType<typeof memoryHarness>>,
  addr: bigint,
  len: number,
  cmd: 1 | 2,
) {
  const fds = await h.client.enableInterrupts(0, 3, 1);
  await h.client.regionWrite32(0, Reg.DMA_ADDR_LO, Number(addr & 0xffffffffn));
  await h.client.regionWrite32(0, Reg.DMA_ADDR_HI, Number(addr >> 32n));
  await h.client.regionWrite32(0, Reg.DMA_LEN, len);
  await h.client.regionWrite32(0, Reg.DMA_CMD, cmd);
  await h.client.waitForInterrupt(fds[0]!);
  return h.client.regionRead32(0, Reg.DMA_STATUS);
}

t.test("a memfd mapped by the client is shared: each side sees the other's bytes", async (t) => {
  const h = await memoryHarness();
  const mem = await h.client.mapMemory(0x10000n, 0x4000);
  mem.bytes.set([1, 2, 3, 4], 0x100);
  t.equal(await dmaThroughDevice(h, 0x10100n, 4, 1), 2, "device read client memory");
  const devMem = h.session.device.region(1)!.memory!;
  t.same([...devMem.subarray(0, 4)], [1, 2, 3, 4]);
  devMem.set([9, 9, 9], 0);
  t.equal(await dmaThroughDevice(h, 0x10200n, 3, 2), 2, "device wrote client memory");
  t.same([...mem.bytes.subarray(0x200, 0x203)], [9, 9, 9]);
  await h.close();
});

t.test("message-backed memory (no fd) is reached with DMA_READ/DMA_WRITE", async (t) => {
  const h = await memoryHarness();
  const mem = await h.client.mapMessageMemory(0x20000n, 0x1000);
  mem.bytes.set([5, 6, 7], 0);
  t.equal(await dmaThroughDevice(h, 0x20000n, 3, 1), 2);
  h.session.device.region(1)!.memory!.set([0xaa, 0xbb], 0);
  t.equal(await dmaThroughDevice(h, 0x20010n, 2, 2), 2);
  t.same([...mem.bytes.subarray(0x10, 0x12)], [0xaa, 0xbb]);
  t.ok(h.client.dmaServed.reads >= 1 && h.client.dmaServed.writes >= 1);
  await h.close();
});

t.test("DMA to an unmapped address is a fault the device reports, not a crash", async (t) => {
  const h = await memoryHarness();
  t.equal(await dmaThroughDevice(h, 0x999000n, 16, 1), 3, "status FAULT");
  t.match(h.sink.text(), /DMA fault \(unmapped\)/);
  await h.close();
});

t.test("DMA_MAP refusals carry their errno", async (t) => {
  const h = await memoryHarness();
  const map = (iova: bigint, size: bigint, flags = RW, offset = 0n, fds: number[] = []) =>
    rawRequest(h.client, Command.DMA_MAP, encodeDmaMap({ argsz: 32, flags, offset, addr: iova, size }), {
      fds,
    });
  t.equal(replyErrno(await map(0x1000n, 0x1000n)), 0, "fd-less map");
  t.equal(replyErrno(await map(0x1000n, 0x1000n)), 17, "exact duplicate: EEXIST");
  t.equal(replyErrno(await map(0x0n, 0x2000n)), 17, "overlap from below: EEXIST");
  t.equal(replyErrno(await map(0x1800n, 0x1000n, RW)), 22, "unaligned iova: EINVAL");
  t.equal(replyErrno(await map(0x4000n, 0x800n)), 22, "unaligned size: EINVAL");
  t.equal(replyErrno(await map(0x4000n, 0n)), 22, "size 0: EINVAL");
  t.equal(replyErrno(await map(0x4000n, 0x1000n, 0)), 22, "no READ: EINVAL");
  t.equal(replyErrno(await map(0x4000n, 0x1000n, 0x10 | RW)), 22, "unknown flag: EINVAL");
  t.equal(replyErrno(await map(U64_MAX - 0xfffn, 0x2000n)), 22, "iova + size wraps past 2^64: EINVAL");
  t.equal(replyErrno(await map(U64_MAX - 0xfffn, 0x1000n)), 0, "an area ending at 2^64-1 is fine");
  t.equal(
    replyErrno(await rawRequest(h.client, Command.DMA_MAP, new Uint8Array(16))),
    22,
    "short body: EINVAL",
  );
  await h.close();
});

t.test(
  "DMA_MAP with an fd smaller than offset+size is refused (no SIGBUS) and the fd is closed",
  async (t) => {
    const h = await memoryHarness();
    const before = openFdCount();
    const fd = native.memfdCreate("small", 0x1000, false);
    const body = encodeDmaMap({ argsz: 32, flags: RW, offset: 0n, addr: 0x100000n, size: 0x2000n });
    t.equal(replyErrno(await rawRequest(h.client, Command.DMA_MAP, body, { fds: [fd] })), 22);
    const body2 = encodeDmaMap({ argsz: 32, flags: RW, offset: 0x1000n, addr: 0x100000n, size: 0x1000n });
    t.equal(
      replyErrno(await rawRequest(h.client, Command.DMA_MAP, body2, { fds: [fd] })),
      22,
      "offset pushes it past the end",
    );
    native.close(fd);
    await settle();
    t.equal(openFdCount(), before);
    // Prove the address really is unmapped: the device's DMA faults.
    t.equal(await dmaThroughDevice(h, 0x100000n, 8, 1), 3);
    await h.close();
  },
);

t.test("DMA_MAP with two fds or an eventfd is refused", async (t) => {
  const h = await memoryHarness();
  const a = native.memfdCreate("a", 0x1000, true);
  const b = native.memfdCreate("b", 0x1000, true);
  const body = encodeDmaMap({ argsz: 32, flags: RW, offset: 0n, addr: 0x1000n, size: 0x1000n });
  t.equal(replyErrno(await rawRequest(h.client, Command.DMA_MAP, body, { fds: [a, b] })), 22, "two fds");
  const efd = native.eventfd(0);
  t.equal(replyErrno(await rawRequest(h.client, Command.DMA_MAP, body, { fds: [efd] })), 22, "an eventfd");
  for (const fd of [a, b, efd]) native.close(fd);
  await h.close();
});

t.test("DMA_UNMAP: exact areas, ALL, and its refusals", async (t) => {
  const h = await memoryHarness();
  const unmap = (addr: bigint, size: bigint, flags = 0, argsz = 24) =>
    rawRequest(h.client, Command.DMA_UNMAP, encodeDmaUnmap({ argsz, flags, addr, size }));
  await h.client.dmaMap({ iova: 0x1000n, size: 0x2000n });
  await h.client.dmaMap({ iova: 0x10000n, size: 0x1000n });
  t.equal(replyErrno(await unmap(0x1000n, 0x1000n)), 2, "part of an area: ENOENT");
  t.equal(replyErrno(await unmap(0x5000n, 0x1000n)), 2, "nothing there: ENOENT");
  t.equal(replyErrno(await unmap(0x1000n, 0x2000n, 0, 16)), 22, "argsz too small for the reply: EINVAL");
  t.equal(replyErrno(await unmap(0x1000n, 0x2000n, DmaUnmapFlag.ALL)), 22, "ALL with an address: EINVAL");
  t.equal(replyErrno(await unmap(0x1000n, 0x2000n, 0x8)), 22, "unknown flag: EINVAL");
  const ok = await unmap(0x1000n, 0x2000n);
  t.equal(replyErrno(ok), 0);
  t.equal(ok.body.length, 24, "the reply echoes the entry");
  t.equal(h.session.space.count, 1);
  t.equal(replyErrno(await unmap(0n, 0n, DmaUnmapFlag.ALL)), 0);
  t.equal(h.session.space.count, 0);
  await h.close();
});

t.test("200 map/unmap cycles of a memfd leave the server's fd count unchanged", async (t) => {
  const h = await memoryHarness();
  const before = openFdCount();
  for (let i = 0; i < 200; i++) {
    const m = await h.client.mapMemory(0x40000n, 0x2000);
    await h.client.dmaUnmap(m.iova, BigInt(m.size));
  }
  t.equal(openFdCount(), before);
  await h.close();
});
