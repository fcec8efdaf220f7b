// The address space on its own: the map and unmap rules with their errnos, the top of the 64-bit
// space, fd windows (a 1 GiB edge), fd offsets, read-only areas, and fd hygiene on refusals.
import t from "tap";
import { MAX_MAP_LENGTH, native } from "../../native/index.ts";
import { AddressSpace, DmaFault } from "../../src/index.ts";
import { FdBacking } from "../../src/iommu/backing.ts";
import { openFdCount } from "../../src/util/fds.ts";
import { bytes, errnoOf, RO, RW, SparseMemory, space, U64_MAX } from "./helpers.ts";

const GiB = BigInt(MAX_MAP_LENGTH);

function msg(iova: bigint, size: bigint, flags = RW) {
  return { iova, size, flags, fd: -1, offset: 0n };
}

/** A memfd of `size` bytes and our own mapping of it; the space gets a duplicate. */
function memfd(size: number) {
  const fd = native.memfdCreate("iommu-test", size, true);
  return {
    fd,
    dup: () => native.dup(fd),
    map(offset = 0, length = size) {
      return new Uint8Array(native.mmap(fd, length, offset, true));
    },
    close() {
      native.close(fd);
    },
  };
}

t.test("map refusals carry their errno and change nothing", async (t) => {
  const s = space({ maxDmaMaps: 3 });
  const E = async (f: () => unknown) => errnoOf(f);
  t.equal(await E(() => s.map(msg(0x1000n, 0x1000n, 0))), 22, "no READ");
  t.equal(await E(() => s.map(msg(0x1000n, 0x1000n, 2))), 22, "WRITE without READ");
  t.equal(await E(() => s.map(msg(0x1000n, 0x1000n, 0x13))), 22, "unknown flag");
  t.equal(await E(() => s.map(msg(0x1000n, 0n))), 22, "size 0");
  t.equal(await E(() => s.map(msg(0x1800n, 0x1000n))), 22, "iova not page-aligned");
  t.equal(await E(() => s.map(msg(0x1000n, 0x800n))), 22, "size not page-aligned");
  t.equal(await E(() => s.map({ ...msg(0x1000n, 0x1000n), offset: 0x800n })), 22, "offset not aligned");
  t.equal(await E(() => s.map(msg(U64_MAX - 0xfffn, 0x2000n))), 22, "iova+size wraps past 2^64");
  t.equal(await E(() => s.map(msg(0n, U64_MAX))), 22, "size 2^64-1 is not page-aligned");
  t.equal(s.count, 0);
  s.map(msg(0x10000n, 0x2000n));
  t.equal(await E(() => s.map(msg(0x10000n, 0x2000n))), 17, "identical map: EEXIST");
  t.equal(await E(() => s.map(msg(0xf000n, 0x2000n))), 17, "overlap from below");
  t.equal(await E(() => s.map(msg(0x11000n, 0x2000n))), 17, "overlap from above");
  t.equal(await E(() => s.map(msg(0x11000n, 0x1000n))), 17, "inside");
  t.equal(await E(() => s.map(msg(0x0n, 0x100000n))), 17, "around");
  s.map(msg(0xf000n, 0x1000n));
  s.map(msg(0x12000n, 0x1000n));
  t.equal(s.count, 3, "adjacent areas on both sides are fine");
  t.equal(await E(() => s.map(msg(0x40000n, 0x1000n))), 28, "over max_dma_maps: ENOSPC");
  s.verify();
});

t.test("an fd that is not memory, or too small, is refused and closed", async (t) => {
  const s = space();
  const before = openFdCount();
  const efd = native.eventfd(0);
  t.equal(await errnoOf(() => s.map({ ...msg(0x1000n, 0x1000n), fd: efd })), 22, "an eventfd");
  const m = memfd(0x2000);
  t.equal(await errnoOf(() => s.map({ ...msg(0x1000n, 0x3000n), fd: m.dup() })), 22, "smaller than size");
  t.equal(
    await errnoOf(() => s.map({ ...msg(0x1000n, 0x2000n), fd: m.dup(), offset: 0x1000n })),
    22,
    "offset+size too far",
  );
  t.equal(
    await errnoOf(() => s.map({ ...msg(0x1000n, 0x1000n), fd: m.dup(), offset: 0x800n })),
    22,
    "bad offset",
  );
  t.equal(await errnoOf(() => s.map({ ...msg(0x1000n, 0x1000n, 0), fd: m.dup() })), 22, "bad flags");
  s.map(msg(0x1000n, 0x1000n));
  t.equal(await errnoOf(() => s.map({ ...msg(0x1000n, 0x1000n), fd: m.dup() })), 17, "overlap");
  m.close();
  t.equal(openFdCount(), before, "every refused fd was closed");
  t.equal(s.count, 1);
});

t.test("unmap takes exactly one whole area (ENOENT otherwise), unmapAll everything", async (t) => {
  const s = space();
  s.map(msg(0x1000n, 0x2000n));
  s.map(msg(0x3000n, 0x1000n));
  t.equal(await errnoOf(s.unmap(0x1000n, 0x1000n)), 2, "the first half");
  t.equal(await errnoOf(s.unmap(0x2000n, 0x1000n)), 2, "the second half");
  t.equal(await errnoOf(s.unmap(0x1000n, 0x3000n)), 2, "two areas at once");
  t.equal(await errnoOf(s.unmap(0x8000n, 0x1000n)), 2, "nothing there");
  t.equal(s.count, 2, "a refused unmap changes nothing");
  const a = await s.unmap(0x1000n, 0x2000n);
  t.equal(a.state, "released");
  t.equal(s.find(0x1000n), null);
  t.equal(await errnoOf(s.unmap(0x1000n, 0x2000n)), 2, "twice");
  await s.unmapAll();
  t.equal(s.count, 0);
  s.verify();
});

t.test("the top of the 64-bit space: an area ending at 2^64-1", async (t) => {
  const s = space();
  const port = new SparseMemory();
  s.messages = port;
  s.map(msg(U64_MAX - 0x1fffn, 0x1000n));
  s.map(msg(U64_MAX - 0xfffn, 0x1000n));
  const m = memfd(0x1000);
  s.map({ ...msg(U64_MAX - 0x2fffn, 0x1000n), fd: m.dup() });
  t.equal(s.find(U64_MAX)?.last, U64_MAX);
  await s.write(U64_MAX - 3n, bytes(1, 2, 3, 4));
  t.same([...port.peek(U64_MAX - 3n, 4)], [1, 2, 3, 4]);
  t.same([...(await s.read(U64_MAX, 1))], [4], "the very last byte");
  const across = U64_MAX - 0x2000n; // the last byte of the fd area and the first message byte
  await s.write(across, bytes(7, 8));
  t.same([...m.map().subarray(0xfff)], [7]);
  t.same([...(await s.read(across, 2))], [7, 8], "a read crossing fd and message areas");
  const f = await s.read(U64_MAX, 2).catch((e) => e);
  t.ok(f instanceof DmaFault && f.kind === "out-of-range", "a range past 2^64-1 wraps: out-of-range");
  t.equal(await errnoOf(s.unmap(U64_MAX - 0xfffn, 0x1000n)), 0);
  const g = await s.read(U64_MAX, 1).catch((e) => e);
  t.equal(g.kind, "unmapped");
  m.close();
  await s.unmapAll();
});

t.test("reads and writes split at area edges; a gap or a missing permission faults", async (t) => {
  const s = space();
  const port = new SparseMemory();
  s.messages = port;
  const m = memfd(0x3000);
  s.map({ ...msg(0x10000n, 0x2000n), fd: m.dup(), offset: 0x1000n });
  s.map(msg(0x12000n, 0x1000n));
  s.map(msg(0x13000n, 0x1000n, RO));
  const data = Uint8Array.from({ length: 0x2000 }, (_, i) => i & 0xff);
  await s.write(0x11000n, data);
  const mine = m.map();
  t.same(mine.subarray(0x2000, 0x3000), data.subarray(0, 0x1000), "fd offset honoured");
  t.same(port.peek(0x12000n, 0x1000), data.subarray(0x1000));
  t.same(await s.read(0x11000n, 0x2000), data);
  const perm = await s.write(0x12ff0n, new Uint8Array(0x20)).catch((e) => e);
  t.equal(perm.kind, "permission", "the read-only area refuses the write");
  t.equal(perm.errno, 1);
  t.same([...port.peek(0x12ff0n, 4)], [...data.subarray(0x1ff0, 0x1ff4)], "nothing was written");
  const gap = await s.read(0x13f00n, 0x200).catch((e) => e);
  t.equal(gap.kind, "unmapped");
  t.same([...(await s.read(0x13000n, 2))], [0, 0], "the read-only area reads");
  const none = await s.read(0x10000n, -1).catch((e) => e);
  t.equal(none.kind, "out-of-range");
  t.same(await s.read(0x99999000n, 0), new Uint8Array(0), "0 bytes anywhere: nothing to translate");
  m.close();
  await s.unmapAll();
});

t.test("fd memory is mapped in 1 GiB windows; an access across an edge is split", async (t) => {
  const s = space();
  const size = MAX_MAP_LENGTH + 0x2000; // sparse memfd: untouched pages cost nothing
  const m = memfd(size);
  const area = s.map({ ...msg(0x4000_0000_0000n, BigInt(size)), fd: m.dup() });
  const edge = 0x4000_0000_0000n + GiB;
  await s.write(edge - 4n, bytes(1, 2, 3, 4, 5, 6, 7, 8));
  const near = m.map(MAX_MAP_LENGTH - 0x1000, 0x2000);
  t.same([...near.subarray(0xffc, 0x1004)], [1, 2, 3, 4, 5, 6, 7, 8]);
  t.same([...(await s.read(edge - 2n, 4))], [3, 4, 5, 6]);
  t.equal((area.backing as unknown as { windowsMapped: number }).windowsMapped, 2);
  t.equal(area.backing.span(GiB - 4n), 4, "4 bytes to the window edge");
  native.unmap(near.buffer as ArrayBuffer);
  m.close();
  await s.unmapAll();
});

t.test("a read-only fd area is mapped read-only and refuses writes", async (t) => {
  const s = space();
  const m = memfd(0x1000);
  m.map().set([9, 8, 7], 0);
  s.map({ ...msg(0x1000n, 0x1000n, RO), fd: m.dup() });
  t.same([...(await s.read(0x1000n, 3))], [9, 8, 7]);
  const f = await s.write(0x1000n, bytes(1)).catch((e) => e);
  t.equal(f.kind, "permission");
  m.close();
  await s.unmapAll();
});

t.test("message-backed DMA without a client is a no-client fault", async (t) => {
  const s = space();
  s.map(msg(0x1000n, 0x1000n));
  const f = await s.read(0x1000n, 4).catch((e) => e);
  t.equal(f.kind, "no-client");
  t.equal(f.errno, 107);
});

t.test("the last-hit cache never outlives its area", async (t) => {
  const s = space();
  s.messages = new SparseMemory();
  s.map(msg(0x1000n, 0x1000n));
  t.ok(s.find(0x1800n));
  await s.unmap(0x1000n, 0x1000n);
  s.verify();
  t.equal(s.find(0x1800n), null);
  s.map(msg(0x1000n, 0x2000n));
  t.equal(s.find(0x2800n)?.size, 0x2000n, "the new area, not a cached old one");
  t.throws(() => new AddressSpace({ maxDmaMaps: 1, pgsize: 3000 }), RangeError);
});

t.test("an fd with a large block size (hugetlbfs) is mapped from a granule-aligned offset", async (t) => {
  const m = memfd(0x400000);
  const mine = m.map();
  mine.set([1, 2, 3, 4], 0x201000);
  // As hugetlbfs reports it: st_blksize 2 MiB, so mmap offsets must be 2 MiB multiples.
  const b = new FdBacking(m.dup(), 0x201000n, 0x100000n, { size: 0x400000, blksize: 0x200000 }, true);
  t.same([...b.view(0n, 4)], [1, 2, 3, 4], "the view starts at the fd offset, not the granule");
  t.equal(b.span(0n), 0x100000, "the whole area fits one window");
  b.view(0x1000n, 1)[0] = 9;
  t.equal(mine[0x202000], 9);
  b.release(null);
  b.release(null);
  t.equal(b.windowsMapped, 0);
  native.unmap(mine.buffer as ArrayBuffer);
  m.close();
});
