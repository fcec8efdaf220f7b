// DMA_MAP / DMA_UNMAP (with the legacy dirty bitmap) and DMA_READ / DMA_WRITE in both layouts.

import fc from "fast-check";
import t from "tap";
import {
  type DmaLayout,
  decodeDmaMap,
  decodeDmaRead,
  decodeDmaReadReply,
  decodeDmaUnmap,
  decodeDmaUnmapReply,
  decodeDmaWrite,
  decodeDmaWriteReply,
  Errno,
  encodeDmaMap,
  encodeDmaRead,
  encodeDmaReadReply,
  encodeDmaUnmap,
  encodeDmaUnmapReply,
  encodeDmaWrite,
  encodeDmaWriteReply,
} from "../../protocol/index.ts";
import * as fx from "../fixtures/protocol/hand-built.ts";
import { extend, hex, shorten, throwsErrno, toHex, withU32, withU64 } from "../fixtures/protocol/helpers.ts";

t.test("DMA_MAP of the top page, read-only, no fd", async (t) => {
  const body = hex(fx.dmaMapHighReadOnly);
  const m = decodeDmaMap(body);
  t.same(m, { argsz: 32, flags: 1, offset: 0n, addr: 0xfffffffffffff000n, size: 0x1000n });
  t.equal(toHex(encodeDmaMap(m)), fx.dmaMapHighReadOnly);
});

t.test("DMA_MAP errors", async (t) => {
  const body = hex(fx.dmaMapHighReadOnly);
  throwsErrno(t, () => decodeDmaMap(shorten(body)), Errno.EINVAL, /at least 32/);
  throwsErrno(t, () => decodeDmaMap(new Uint8Array(0)), Errno.EINVAL);
  throwsErrno(t, () => decodeDmaMap(withU32(body, 0, 31)), Errno.EINVAL, /argsz 31/);
  t.same(decodeDmaMap(extend(body, 8)).size, 0x1000n, "extra bytes after the struct are ignored");
  t.throws(() => encodeDmaMap({ ...decodeDmaMap(body), size: 1n << 64n }), RangeError);
  t.throws(() => encodeDmaMap({ ...decodeDmaMap(body), addr: -1n }), RangeError);
});

t.test("property: DMA_MAP round-trips", async (t) => {
  const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
  const u32 = fc.integer({ min: 0, max: 0xffffffff });
  fc.assert(
    fc.property(
      fc.integer({ min: 32, max: 0xffffffff }),
      u32,
      u64,
      u64,
      u64,
      (argsz, flags, offset, addr, size) => {
        const m = { argsz, flags, offset, addr, size };
        const body = encodeDmaMap(m);
        if (body.length !== 32) throw new Error("size");
        const back = decodeDmaMap(body);
        if (
          JSON.stringify(back, (_, v) => (typeof v === "bigint" ? `${v}` : v)) !==
          JSON.stringify(m, (_, v) => (typeof v === "bigint" ? `${v}` : v))
        ) {
          throw new Error("mismatch");
        }
      },
    ),
    { numRuns: 500 },
  );
  t.pass("500 maps");
});

t.test("DMA_UNMAP ALL", async (t) => {
  const u = decodeDmaUnmap(hex(fx.dmaUnmapAll));
  t.same(u, { argsz: 24, flags: 2, addr: 0n, size: 0n });
  t.equal(toHex(encodeDmaUnmap(u)), fx.dmaUnmapAll);
  const reply = decodeDmaUnmapReply(hex(fx.dmaUnmapAll));
  t.same(reply, u, "the reply echoes the struct");
  t.equal(toHex(encodeDmaUnmapReply(reply!)), fx.dmaUnmapAll);
  t.equal(decodeDmaUnmapReply(new Uint8Array(0)), null, "a header-only reply");
});

t.test("DMA_UNMAP with the legacy dirty bitmap", async (t) => {
  const u = decodeDmaUnmap(hex(fx.dmaUnmapDirty));
  t.same(u, { argsz: 48, flags: 1, addr: 0x10000n, size: 0x40000n, bitmap: { pgsize: 4096n, size: 8n } });
  t.equal(toHex(encodeDmaUnmap(u)), fx.dmaUnmapDirty);
  const body = hex(fx.dmaUnmapDirtyReply);
  const r = decodeDmaUnmapReply(body)!;
  t.same(r.bitmap, { pgsize: 4096n, size: 8n });
  t.equal(toHex(r.bitmapData!), "0500000000000080");
  t.equal(r.bitmapData!.buffer, body.buffer, "bitmap is a view, not a copy");
  t.equal(toHex(encodeDmaUnmapReply(r)), fx.dmaUnmapDirtyReply);
});

t.test("DMA_UNMAP errors", async (t) => {
  const all = hex(fx.dmaUnmapAll);
  const dirty = hex(fx.dmaUnmapDirty);
  throwsErrno(t, () => decodeDmaUnmap(shorten(all)), Errno.EINVAL, /at least 24/);
  throwsErrno(t, () => decodeDmaUnmap(extend(all)), Errno.EINVAL, /must be 24/);
  throwsErrno(t, () => decodeDmaUnmap(withU32(all, 0, 23)), Errno.EINVAL, /argsz 23/);
  throwsErrno(t, () => decodeDmaUnmap(shorten(dirty)), Errno.EINVAL, /GET_DIRTY_BITMAP/);
  throwsErrno(t, () => decodeDmaUnmap(extend(dirty)), Errno.EINVAL, /must be 40/);
  throwsErrno(t, () => decodeDmaUnmap(withU32(all, 4, 1)), Errno.EINVAL, /GET_DIRTY_BITMAP/);
  const reply = hex(fx.dmaUnmapDirtyReply);
  throwsErrno(t, () => decodeDmaUnmapReply(shorten(reply)), Errno.EINVAL, /bitmap size is 8 but 7/);
  throwsErrno(t, () => decodeDmaUnmapReply(withU64(reply, 32, 1n << 63n)), Errno.EINVAL, /bitmap size/);
  throwsErrno(t, () => decodeDmaUnmapReply(hex("00")), Errno.EINVAL);
  throwsErrno(t, () => decodeDmaUnmapReply(extend(all)), Errno.EINVAL, /must be 24/);
  const u = decodeDmaUnmap(all);
  t.throws(
    () => encodeDmaUnmap({ ...u, bitmap: { pgsize: 1n, size: 1n } }),
    RangeError,
    "bitmap without the flag",
  );
  t.throws(() => encodeDmaUnmap({ ...u, flags: 1 }), RangeError, "flag without the bitmap");
  const r = decodeDmaUnmapReply(reply)!;
  t.throws(() => encodeDmaUnmapReply({ ...r, bitmapData: new Uint8Array(3) }), RangeError);
});

const layouts: [DmaLayout, Record<string, string>][] = [
  [
    "spec",
    {
      read: fx.dmaReadSpec,
      readReply: fx.dmaReadSpecReply,
      write: fx.dmaWriteSpec,
      writeReply: fx.dmaWriteSpecReply,
    },
  ],
  [
    "qemu-10.1",
    {
      read: fx.dmaReadQemu,
      readReply: fx.dmaReadQemuReply,
      write: fx.dmaWriteQemu,
      writeReply: fx.dmaWriteQemuReply,
    },
  ],
];

for (const [layout, f] of layouts) {
  t.test(`DMA_READ / DMA_WRITE, ${layout} layout`, async (t) => {
    const read = decodeDmaRead(hex(f.read), layout);
    t.same(read, { addr: 0x10000000n, count: 16 });
    t.equal(toHex(encodeDmaRead(read, layout)), f.read);

    const replyBody = hex(f.readReply);
    const reply = decodeDmaReadReply(replyBody, layout);
    t.equal(reply.count, 16);
    t.equal(toHex(reply.data), "000102030405060708090a0b0c0d0e0f");
    t.equal(reply.data.buffer, replyBody.buffer, "data is a view");
    t.equal(toHex(encodeDmaReadReply(reply, layout)), f.readReply);
    t.equal(replyBody.length, 16 + 16, "reply body is 16 + count in both layouts");

    const write = decodeDmaWrite(hex(f.write), layout);
    t.same({ addr: write.addr, count: write.count }, { addr: 0x2000n, count: 4 });
    t.equal(toHex(write.data), "deadbeef");
    t.equal(toHex(encodeDmaWrite(write, layout)), f.write);

    const writeReply = decodeDmaWriteReply(hex(f.writeReply), layout);
    if (layout === "spec") t.same(writeReply, { addr: 0x2000n, count: 4 });
    else t.equal(writeReply, null, "QEMU 10.1 answers header-only");
    t.equal(toHex(encodeDmaWriteReply(write, layout)), f.writeReply);
  });
}

t.test("DMA_READ / DMA_WRITE errors", async (t) => {
  throwsErrno(t, () => decodeDmaRead(hex(fx.dmaReadSpec).subarray(0, 15)), Errno.EINVAL, /must be 16/);
  throwsErrno(t, () => decodeDmaRead(extend(hex(fx.dmaReadSpec))), Errno.EINVAL, /must be 16/);
  throwsErrno(t, () => decodeDmaRead(withU64(hex(fx.dmaReadSpec), 8, 1n << 60n)), Errno.EINVAL, /too large/);
  t.equal(
    decodeDmaRead(withU64(hex(fx.dmaReadQemu), 8, 1n << 60n), "qemu-10.1").count,
    0,
    "qemu-10.1 reads the low 32 bits",
  );
  throwsErrno(t, () => decodeDmaReadReply(shorten(hex(fx.dmaReadSpecReply))), Errno.EINVAL, /must be 32/);
  throwsErrno(t, () => decodeDmaReadReply(hex(fx.dmaReadSpec)), Errno.EINVAL, /must be 32/, "no data");
  throwsErrno(t, () => decodeDmaReadReply(hex("00")), Errno.EINVAL, /at least 16/);
  throwsErrno(t, () => decodeDmaReadReply(hex("00"), "qemu-10.1"), Errno.EINVAL, /at least 12/);
  throwsErrno(
    t,
    () => decodeDmaReadReply(extend(hex(fx.dmaReadQemuReply)), "qemu-10.1"),
    Errno.EINVAL,
    /28 to 32/,
  );
  throwsErrno(
    t,
    () => decodeDmaReadReply(hex(fx.dmaReadQemuReply).subarray(0, 27), "qemu-10.1"),
    Errno.EINVAL,
  );
  t.equal(
    decodeDmaReadReply(hex(fx.dmaReadQemuReply).subarray(0, 28), "qemu-10.1").data.length,
    16,
    "padding optional",
  );
  throwsErrno(t, () => decodeDmaWrite(extend(hex(fx.dmaWriteSpec))), Errno.EINVAL, /must be 20/);
  throwsErrno(t, () => decodeDmaWrite(shorten(hex(fx.dmaWriteSpec))), Errno.EINVAL);
  throwsErrno(t, () => decodeDmaWrite(hex("00000000"), "qemu-10.1"), Errno.EINVAL);
  throwsErrno(t, () => decodeDmaWriteReply(hex("00000000")), Errno.EINVAL, /must be 16/);
  t.throws(() => encodeDmaReadReply({ addr: 0n, count: 4 }), RangeError, "data required");
  t.throws(
    () => encodeDmaWrite({ addr: 0n, count: 4, data: new Uint8Array(3) }),
    RangeError,
    "data length == count",
  );
  t.throws(
    () => encodeDmaRead({ addr: 0n, count: 2 ** 32 }, "qemu-10.1"),
    RangeError,
    "count is u32 in qemu-10.1",
  );
  t.throws(() => encodeDmaRead({ addr: 0n, count: -1 }), RangeError);
});
