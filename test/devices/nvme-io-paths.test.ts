// nvme's data paths: synchronous file I/O on the event loop (Read/Write up to SYNC_IO_MAX_BYTES,
// within the pass budget and the slow-transfer back-off) against the libuv pool path, the
// boundaries of each limit, errors of the synchronous path, DMA faults, and the shadow-doorbell
// hold (an SQ that goes idle after a burst waits one poll tick before publishing its event index;
// a lone command publishes at once), and the guest page lists kept across commands.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t, { type Test } from "tap";
import {
  Namespace,
  SYNC_IO_BACKOFF_MS,
  SYNC_IO_MAX_BYTES,
  SYNC_IO_PASS_BUDGET_MS,
  SYNC_IO_SLOW_MS,
} from "../../devices/nvme/namespace.ts";
import { MAX_PAGES, PageLists } from "../../devices/nvme/page-lists.ts";
import { Status } from "../../devices/nvme/spec.ts";
import type { DmaApi } from "../../src/index.ts";
import { Layout, MEM_IOVA, MEM_SIZE, NvmeHost } from "./nvme-host.ts";

function pattern(length: number, seed: number): Uint8Array {
  const b = new Uint8Array(length);
  for (let i = 0; i < length; i++) b[i] = (i * 11 + seed * 29 + (i >> 12)) & 0xff;
  return b;
}

async function ready(t: Test, options: Record<string, string> = {}): Promise<NvmeHost> {
  const h = await NvmeHost.ready(t, options);
  await h.createQueues(1, 64);
  return h;
}

/** A PRP list at `listOff` for `pages` data pages at scattered offsets (every other page from
 * `dataOff`): returns the PRP1 offset and the PRP2 (list) iova. */
function prpList(
  h: NvmeHost,
  listOff: number,
  dataOff: number,
  pages: number,
): { prp1: number; prp2: bigint } {
  for (let i = 1; i < pages; i++)
    h.view.setBigUint64(listOff + (i - 1) * 8, h.iova(dataOff + i * 2 * 4096), true);
  return { prp1: dataOff, prp2: h.iova(listOff) };
}

function gatherPages(h: NvmeHost, dataOff: number, pages: number): Uint8Array {
  const out = new Uint8Array(pages * 4096);
  for (let i = 0; i < pages; i++) {
    const at = dataOff + i * 2 * 4096;
    out.set(h.mem.bytes.subarray(at, at + 4096), i * 4096);
  }
  return out;
}

t.test("Namespace: the synchronous I/O limits and their boundaries", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "vfu-nvme-ns-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ns = new Namespace({ path: path.join(dir, "d.img"), size: 1 << 20, lbaSize: 512 });
  t.teardown(() => ns.close());
  t.equal(SYNC_IO_MAX_BYTES, 128 * 1024, "the limit is MDTS (128 KiB)");
  ns.beginPass();
  t.ok(ns.syncAllowed(SYNC_IO_MAX_BYTES), "exactly the limit: synchronous");
  t.notOk(ns.syncAllowed(SYNC_IO_MAX_BYTES + 512), "one block more: the pool");
  // The pass budget: once spent, the rest of the pass goes to the pool; a new pass starts again.
  ns.noteSyncTime(SYNC_IO_PASS_BUDGET_MS * 0.9);
  t.ok(ns.syncAllowed(4096), "under the pass budget");
  ns.noteSyncTime(SYNC_IO_PASS_BUDGET_MS * 0.2);
  t.notOk(ns.syncAllowed(4096), "budget spent: the pool for the rest of the pass");
  ns.beginPass();
  t.ok(ns.syncAllowed(4096), "a new pass");
  // A transfer at the slow threshold is not slow; above it, synchronous I/O backs off.
  ns.noteSyncTime(SYNC_IO_SLOW_MS);
  ns.beginPass();
  t.ok(ns.syncAllowed(4096), "exactly SYNC_IO_SLOW_MS is not slow");
  t.equal(ns.stats.slowSyncTransfers, 0);
  ns.noteSyncTime(SYNC_IO_SLOW_MS + 0.5);
  ns.beginPass();
  t.notOk(ns.syncAllowed(4096), "a slow transfer turns synchronous I/O off");
  t.equal(ns.stats.slowSyncTransfers, 1, "counted");
  await new Promise((r) => setTimeout(r, SYNC_IO_BACKOFF_MS + 20));
  t.ok(ns.syncAllowed(4096), "on again after the back-off");
  ns.syncIo = "reads";
  t.ok(ns.syncAllowed(512), "syncio=reads: a read");
  t.notOk(ns.syncAllowed(512, true), "syncio=reads: not a write");
  ns.syncIo = "off";
  t.notOk(ns.syncAllowed(512), "syncio=off");
  // The transfer itself, scattered over several buffers, and a read past the end of the file.
  ns.syncIo = "on";
  const data = pattern(8192, 1);
  ns.transferSync(true, 8n, [data.subarray(0, 100), data.subarray(100, 5000), data.subarray(5000)], 8192);
  t.same(readFileSync(ns.path).subarray(4096, 4096 + 8192), Buffer.from(data), "writev'd at LBA 8");
  const a = new Uint8Array(3000);
  const b = new Uint8Array(5192);
  ns.transferSync(false, 8n, [a, b], 8192);
  t.same(Buffer.concat([a, b]), Buffer.from(data), "readv'd back");
});

for (const syncio of ["on", "off"]) {
  t.test(`Read/Write with syncio=${syncio}: 4 KiB and 128 KiB (PRP lists), same data`, async (t) => {
    const h = await ready(t, { syncio });
    const ns = h.device.behaviour.controller.ns;
    const D = Layout.DATA;
    const big = pattern(128 * 1024, 2);
    // 128 KiB through a PRP list of 32 scattered pages (32 DMA pieces).
    const w = prpList(h, D + 0x100000, D, 32);
    for (let i = 0; i < 32; i++) h.mem.bytes.set(big.subarray(i * 4096, (i + 1) * 4096), D + i * 2 * 4096);
    const sync0 = ns.stats.syncTransfers;
    t.equal((await h.rw(1, true, 256, 256, w.prp1, { prp2: w.prp2 })).status, 0, "128 KiB write");
    const small = pattern(4096, 3);
    h.mem.bytes.set(small, D + 0x180000);
    t.equal((await h.rw(1, true, 8, 8, D + 0x180000)).status, 0, "4 KiB write");
    t.same(readFileSync(h.disk).subarray(256 * 512, 512 * 512), Buffer.from(big), "128 KiB in the file");
    t.same(readFileSync(h.disk).subarray(8 * 512, 16 * 512), Buffer.from(small), "4 KiB in the file");
    // Read both back into other pages.
    const r = prpList(h, D + 0x101000, D + 0x40000, 32);
    t.equal((await h.rw(1, false, 256, 256, r.prp1, { prp2: r.prp2 })).status, 0, "128 KiB read");
    t.same(gatherPages(h, D + 0x40000, 32), big, "128 KiB read back");
    t.equal((await h.rw(1, false, 8, 8, D + 0x1a0000)).status, 0, "4 KiB read");
    t.same(h.mem.bytes.subarray(D + 0x1a0000, D + 0x1a1000), small, "4 KiB read back");
    // Unaligned PRP1 (a 4 KiB read across two pages: two pieces).
    t.equal((await h.rw(1, false, 8, 8, D + 0x1c0200, { prp2: h.iova(D + 0x1d0000) })).status, 0);
    t.same(h.mem.bytes.subarray(D + 0x1c0200, D + 0x1c1000), small.subarray(0, 0xe00), "first piece");
    t.same(h.mem.bytes.subarray(D + 0x1d0000, D + 0x1d0200), small.subarray(0xe00), "second piece");
    const synced = ns.stats.syncTransfers - sync0;
    if (syncio === "on") t.equal(synced, 5, "every transfer synchronous");
    else t.equal(synced, 0, "none synchronous");
  });
}

t.test("synchronous path: an fs error is Internal Error with DNR; the next command works", async (t) => {
  const h = await ready(t);
  const ns = h.device.behaviour.controller.ns;
  const real = ns.transferSync.bind(ns);
  ns.transferSync = () => {
    throw Object.assign(new Error("EIO: i/o error, readv"), { code: "EIO" });
  };
  const c = await h.rw(1, false, 0, 8, Layout.DATA);
  t.equal(c.status, Status.INTERNAL_ERROR, "Internal Error");
  t.ok(c.dnr, "DNR");
  t.match(h.logs.text(), /EIO/, "logged");
  ns.transferSync = real;
  t.equal((await h.rw(1, false, 0, 8, Layout.DATA)).status, 0, "next read works");
});

t.test("DMA faults with synchronous I/O on: Data Transfer Error, the file untouched", async (t) => {
  const h = await ready(t);
  const D = Layout.DATA;
  const before = readFileSync(h.disk).subarray(0, 8192);
  // 8 KiB: PRP1 is the last mapped page, PRP2 beyond the mapping.
  const last = MEM_SIZE - 4096;
  h.mem.bytes.fill(0x5a, last, MEM_SIZE);
  let c = await h.rw(1, true, 0, 16, last, { prp2: MEM_IOVA + BigInt(MEM_SIZE) });
  t.equal(c.status, Status.DATA_TRANSFER_ERROR, "write: second page unmapped");
  c = await h.rw(1, false, 0, 16, last, { prp2: MEM_IOVA + BigInt(MEM_SIZE) });
  t.equal(c.status, Status.DATA_TRANSFER_ERROR, "read: second page unmapped");
  c = await h.rw(1, false, 0, 8, 0, { prp1: 0x7000_0000n });
  t.equal(c.status, Status.DATA_TRANSFER_ERROR, "read: unmapped PRP1");
  t.same(readFileSync(h.disk).subarray(0, 8192), before, "file untouched by the faulting write");
  t.equal((await h.rw(1, false, 0, 8, D)).status, 0, "a good read after the faults");
});

t.test(
  "shadow doorbells: an idle SQ holds its event index after a burst, not after one command",
  async (t) => {
    const h = await ready(t);
    t.equal((await h.dbbuf()).status, 0, "DBBC");
    const q = h.queues.get(1)!;
    const ei = () => h.view.getUint32(Layout.EIS + 2 * h.stride, true);
    const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));
    // One command: published at once when the queue goes idle.
    // The host may reap the completion before the pump's pass reaches the idle queue, so give the
    // pass a few event-loop turns (on a loaded machine one timer turn was not enough).
    t.equal((await h.rw(1, false, 0, 1, Layout.DATA)).status, 0);
    for (let turn = 0; turn < 50 && ei() !== q.sqTail; turn++) await new Promise((r) => setImmediate(r));
    t.equal(ei(), q.sqTail, "lone command: event index = tail");
    // A burst of 8 submitted together: completes, and the index stays where it was until a poll
    // tick (a timer pass) finds nothing new. Timing on a loaded host is loose, so: either it is
    // still held now, or a poll tick has run since the burst was fetched.
    const c = h.device.behaviour.controller.counters;
    let held = 0;
    for (let round = 0; round < 5; round++) {
      const all = [];
      for (let i = 0; i < 8; i++) all.push(h.rw(1, false, i * 8, 8, Layout.DATA + i * 4096));
      const polls = c.shadowPolls;
      const res = await Promise.all(all);
      t.ok(
        res.every((r) => r.status === 0),
        `burst ${round} completes`,
      );
      if (ei() !== q.sqTail) {
        held++;
        // Submitted while held: picked up by the poll without an MMIO doorbell.
        const mmio = h.mmioDoorbells;
        t.equal((await h.rw(1, false, 0, 1, Layout.DATA)).status, 0, "found by the poll");
        t.equal(h.mmioDoorbells, mmio, "no MMIO doorbell while held");
      } else t.ok(c.shadowPolls > polls, "published, but only by a poll tick");
    }
    t.ok(held > 0, `held after ${held} of 5 bursts`);
    const until = performance.now() + 1000;
    while (ei() !== q.sqTail && performance.now() < until) await settle(2);
    t.equal(ei(), q.sqTail, "published once a poll tick found nothing new");
  },
);

t.test("shadow doorbells with holdpoll=off: published as soon as the queue is idle", async (t) => {
  const h = await ready(t, { holdpoll: "off" });
  t.equal((await h.dbbuf()).status, 0, "DBBC");
  const q = h.queues.get(1)!;
  const all = [];
  for (let i = 0; i < 8; i++) all.push(h.rw(1, false, i * 8, 8, Layout.DATA + i * 4096));
  await Promise.all(all);
  await new Promise((r) => setTimeout(r, 0));
  t.equal(h.view.getUint32(Layout.EIS + 2 * h.stride, true), q.sqTail, "published");
});

t.test("options: syncio is on/reads/off, holdpoll a boolean", async (t) => {
  await t.rejects(NvmeHost.start({ syncio: "maybe" }), /syncio=maybe is refused/);
  const h = await NvmeHost.start({ syncio: "reads" });
  t.equal(h.device.behaviour.controller.ns.syncIo, "reads", "syncio=reads");
  await h.stop();
  h.cleanup();
  await t.rejects(NvmeHost.start({ holdpoll: "maybe" }), /holdpoll=maybe is refused \(not on or off\)/);
});

t.test("kept page lists: reused across commands, dropped at unmap, gated by Bus Master", async (t) => {
  const h = await ready(t);
  const c = h.device.behaviour.controller;
  const data = pattern(8192, 7);
  h.mem.bytes.set(data, Layout.DATA);
  t.equal((await h.rw(1, true, 40, 16, Layout.DATA, { prp2: h.iova(Layout.DATA + 4096) })).status, 0);
  const misses = c.pages.misses;
  for (let i = 0; i < 3; i++) {
    h.mem.bytes.fill(0, Layout.DATA + 0x10000, Layout.DATA + 0x12000);
    const r = await h.rw(1, false, 40, 16, Layout.DATA + 0x10000, { prp2: h.iova(Layout.DATA + 0x11000) });
    t.equal(r.status, 0);
    t.same(h.mem.bytes.subarray(Layout.DATA + 0x10000, Layout.DATA + 0x12000), data, `read ${i}`);
  }
  t.equal(c.pages.misses - misses, 2, "two pages taken once");
  t.ok(c.pages.hits >= 4, "then reused");

  // A second DMA area: read into it, unmap it; the kept lists go with it (a read there now
  // faults instead of landing in the old mapping), and a new mapping at the same address works.
  const IOVA2 = 0x4000_0000n;
  const m1 = await h.client.mapMemory(IOVA2, 1 << 20);
  t.equal((await h.rw(1, false, 40, 8, 0, { prp1: IOVA2 })).status, 0, "read into area 2");
  t.same(m1.bytes.subarray(0, 4096), data.subarray(0, 4096));
  const kept = c.pages.size;
  await h.client.dmaUnmap(IOVA2, 1n << 20n);
  t.ok(c.pages.size < kept, "the unmap dropped its kept list");
  t.equal((await h.rw(1, false, 40, 8, 0, { prp1: IOVA2 })).status, Status.DATA_TRANSFER_ERROR, "unmapped");
  const m2 = await h.client.mapMemory(IOVA2, 1 << 20);
  t.equal((await h.rw(1, false, 40, 8, 0, { prp1: IOVA2 })).status, 0, "mapped again");
  t.same(m2.bytes.subarray(0, 4096), data.subarray(0, 4096), "the data is in the new mapping");

  // Bus Master off: no DMA, kept lists or not.
  await h.client.regionWrite(0x7 /* config */, 0x04, Uint8Array.of(0x02, 0)); // MEMORY only
  h.mem.bytes.fill(0xee, Layout.DATA + 0x10000, Layout.DATA + 0x11000);
  const r = await h.rw(1, false, 0, 8, Layout.DATA + 0x10000);
  t.equal(r.status, Status.DATA_TRANSFER_ERROR, "Bus Master off: Data Transfer Error");
  t.ok(
    h.mem.bytes.subarray(Layout.DATA + 0x10000, Layout.DATA + 0x11000).every((b) => b === 0xee),
    "guest memory untouched",
  );
  await h.client.regionWrite(0x7, 0x04, Uint8Array.of(0x06, 0));
  t.equal((await h.rw(1, false, 0, 8, Layout.DATA + 0x10000)).status, 0, "Bus Master on again");
});

t.test("PageLists: bounded, least recently used goes first, stale lists retaken, all released", async (t) => {
  const released: bigint[] = [];
  const segs = new Map<bigint, { bytes: Uint8Array }>();
  let taken = 0;
  const fake = {
    sg(iova: bigint, length: number) {
      taken++;
      const seg = { bytes: new Uint8Array(length) as Uint8Array };
      segs.set(iova, seg);
      return {
        iova,
        segments: [seg],
        release() {
          released.push(iova);
          seg.bytes = new Uint8Array(0);
        },
      };
    },
  } as unknown as DmaApi;
  const p = new PageLists(fake);
  const page = (i: number) => BigInt(i) * 4096n;
  t.equal(p.bytes(page(0) + 512n, 1024)?.length, 1024, "a piece inside a page");
  for (let i = 1; i < MAX_PAGES; i++) p.bytes(page(i), 4096);
  t.equal(p.size, MAX_PAGES, "full");
  p.bytes(page(0), 4096); // page 0 used again: most recent
  p.bytes(page(MAX_PAGES), 4096); // one more: the least recently used (page 1) goes
  t.equal(p.size, MAX_PAGES, "still bounded");
  t.same(released, [page(1)], "page 1 evicted, not page 0");
  const before = taken;
  p.bytes(page(0), 4096);
  t.equal(taken, before, "page 0 still kept");
  // A list emptied behind our back (stale after an unmap) is released and retaken.
  segs.get(page(2))!.bytes = new Uint8Array(0);
  const again = taken;
  t.equal(p.bytes(page(2), 4096)?.length, 4096, "stale list retaken");
  t.equal(taken, again + 1, "one new list");
  t.equal(released.at(-1), page(2), "the stale one released");
  p.drop([]);
  t.equal(p.size, MAX_PAGES, "drop of nothing keeps all");
  p.clear();
  t.equal(p.size, 0, "cleared");
  t.equal(released.length, MAX_PAGES + 2, "every list released once");
});
