// Dirty logging on its own and through device writes: the bitmap layout of DMA_LOGGING_REPORT
// (u64 LE words, bit k = page iova + k·page_size), clearing on read, ranges, other report page
// sizes, writable views, and the refusals.
import t from "tap";
import { native } from "../../native/index.ts";
import { DeviceDma, DirtyLog, silentLogger } from "../../src/index.ts";
import { bytes, errnoOf, RW, SparseMemory, space, U64_MAX } from "./helpers.ts";

/** The set bits of a report bitmap. */
function bits(map: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < map.length * 8; i++) if (map[i >> 3]! & (1 << (i & 7))) out.push(i);
  return out;
}

t.test("the bitmap layout: u64 little-endian words, one bit per page, cleared on read", async (t) => {
  const log = new DirtyLog(4096);
  t.equal(log.start(4096n), 4096n);
  log.mark(0x10000n, 1); // page 0 of the report below
  log.mark(0x10000n + 65n * 4096n + 100n, 8); // page 65: word 1, bit 1
  log.mark(0x10000n + 70n * 4096n - 1n, 2); // straddles pages 69 and 70
  const map = log.report(0x10000n, 128n * 4096n, 4096n);
  t.equal(map.length, 16, "two u64 words");
  const dv = new DataView(map.buffer);
  t.equal(dv.getBigUint64(0, true), 1n);
  t.equal(dv.getBigUint64(8, true), (1n << 1n) | (1n << 5n) | (1n << 6n));
  t.same(bits(map), [0, 65, 69, 70]);
  t.same(bits(log.report(0x10000n, 128n * 4096n, 4096n)), [], "reading cleared it");
  t.equal(log.dirtyPages, 0);
  t.equal(DirtyLog.bitmapBytes(1n, 4096n), 8n, "one page: a whole word");
  t.equal(DirtyLog.bitmapBytes(65n * 4096n, 4096n), 16n);
});

t.test("bits beyond the range stay zero; a report of part of the log clears only that part", async (t) => {
  const log = new DirtyLog(4096);
  log.start(4096n);
  log.mark(0n, 10 * 4096);
  const a = log.report(2n * 4096n, 3n * 4096n, 4096n);
  t.same(bits(a), [0, 1, 2]);
  t.equal(a.length, 8);
  t.same(bits(log.report(0n, 10n * 4096n, 4096n)), [0, 1, 5, 6, 7, 8, 9]);
});

t.test("a page only partly inside the report is reported but not cleared", async (t) => {
  const log = new DirtyLog(4096);
  log.start(4096n);
  log.mark(0x5000n, 1);
  t.same(bits(log.report(0x5800n, 0x100n, 0x100n)), [0], "a smaller report page inside a dirty logged page");
  t.same(
    bits(log.report(0x5000n, 0x1000n, 0x100n)),
    [...Array(16).keys()],
    "a smaller report page size: every sub-page of a dirty page",
  );
  t.same(bits(log.report(0x5000n, 0x1000n, 0x1000n)), [], "cleared by the report that covered it");
  log.mark(0x5000n, 1);
  t.same(bits(log.report(0x5800n, 0x1000n, 0x1000n)), [0], "unaligned report: the dirty page shows");
  t.same(bits(log.report(0x5000n, 0x1000n, 0x1000n)), [0], "but partly covered, it was not cleared");
});

t.test("larger report pages and logging page sizes", async (t) => {
  const log = new DirtyLog(4096);
  t.equal(log.start(512n), 4096n, "a page size below the space's is raised");
  log.stop();
  t.equal(log.start(0x200000n), 0x200000n);
  log.mark(0x200000n + 5n, 1);
  t.same(bits(log.report(0n, 0x800000n, 0x200000n)), [1]);
  log.mark(0x200000n + 5n, 1);
  t.same(bits(log.report(0n, 0x800000n, 0x400000n)), [0], "a report page holding a dirty logged page");
  log.mark(0x200000n, 1);
  t.same(bits(log.report(0x200000n, 0x200000n, 4096n)).length, 512, "a smaller report page size: all of it");
});

t.test("ranges: only writes inside them are logged", async (t) => {
  const log = new DirtyLog(4096);
  log.start(4096n, [
    { iova: 0x10000n, length: 0x2000n },
    { iova: 0x1000n, length: 0x1000n },
  ]);
  t.same(
    log.ranges.map((r) => r.iova),
    [0x1000n, 0x10000n],
    "kept sorted",
  );
  log.mark(0n, 0x20000);
  t.same(bits(log.report(0n, 0x20000n, 4096n)), [1, 16, 17]);
});

t.test("the top of the 64-bit space", async (t) => {
  const log = new DirtyLog(4096);
  log.start(4096n);
  log.mark(U64_MAX, 1);
  log.mark(U64_MAX - 0x2fffn, 1);
  const map = log.report(U64_MAX - 0x3fffn, 0x4000n, 4096n);
  t.same(bits(map), [1, 3]);
  t.equal(log.dirtyPages, 0);
  t.equal(await errnoOf(() => log.report(U64_MAX, 2n, 4096n)), 22, "a wrapping report");
});

t.test("refusals", async (t) => {
  const log = new DirtyLog(4096);
  t.equal(await errnoOf(() => log.report(0n, 4096n, 4096n)), 22, "report while off");
  t.equal(await errnoOf(() => log.start(3000n)), 22, "page size not a power of two");
  t.equal(await errnoOf(() => log.start(0n)), 22, "page size 0");
  t.equal(await errnoOf(() => log.start(4096n, [{ iova: 0n, length: 0n }])), 22, "empty range");
  t.equal(await errnoOf(() => log.start(4096n, [{ iova: U64_MAX, length: 2n }])), 22, "wrapping range");
  const overlapping = [
    { iova: 0n, length: 0x2000n },
    { iova: 0x1000n, length: 0x1000n },
  ];
  t.equal(await errnoOf(() => log.start(4096n, overlapping)), 22, "overlapping ranges");
  const many = Array.from({ length: 257 }, (_, i) => ({ iova: BigInt(i) * 0x1000n, length: 0x1000n }));
  t.equal(await errnoOf(() => log.start(4096n, many)), 7, "more than 256 ranges: E2BIG");
  t.notOk(log.logging, "no refused start turned logging on");
  log.start(4096n);
  t.equal(await errnoOf(() => log.start(4096n)), 16, "started twice: EBUSY");
  t.equal(await errnoOf(() => log.report(0n, 0n, 4096n)), 22, "empty report");
  t.equal(await errnoOf(() => log.report(0n, 4096n, 4097n)), 22, "report page size not a power of two");
  t.equal(await errnoOf(() => log.report(0n, 1n << 40n, 4096n, 1024)), 7, "bitmap too large: E2BIG");
  log.stop();
  log.stop();
  t.notOk(log.logging);
});

t.test("device writes mark pages; writable views are dirty until released", async (t) => {
  const s = space();
  s.messages = new SparseMemory();
  const dma = new DeviceDma(silentLogger);
  dma.attach(s);
  const fd = native.memfdCreate("dirty", 0x10000, true);
  s.map({ iova: 0x100000n, size: 0x10000n, flags: RW, fd: native.dup(fd), offset: 0n });
  s.map({ iova: 0x200000n, size: 0x1000n, flags: RW, fd: -1, offset: 0n });
  await dma.write(0x100000n, bytes(1)); // before logging: not recorded
  s.dirty.start(4096n);
  await dma.write(0x101000n, bytes(1));
  await dma.write(0x200010n, bytes(1, 2)); // message-backed memory counts too
  await dma.read(0x103000n, 16); // reads never do
  const report = () => bits(s.dirty.report(0x100000n, 0x10000n, 4096n));
  t.same(report(), [1]);
  t.same(bits(s.dirty.report(0x200000n, 0x1000n, 4096n)), [0]);
  const v = dma.view(0x104000n, 0x1001, "write");
  const r = dma.view(0x106000n, 16, "read");
  t.same(report(), [4, 5], "a writable view is dirty while held");
  t.same(report(), [4, 5], "and stays dirty after a report cleared it");
  v.release();
  r.release();
  t.same(report(), [4, 5], "its release marks it once more");
  t.same(report(), []);
  const list = dma.sg(0x10e800n, 0x1000, "write");
  t.same(report(), [14, 15], "a writable sg list over fd memory is dirty while held");
  list.release();
  s.dirty.stop();
  await s.unmapAll();
  native.close(fd);
});
