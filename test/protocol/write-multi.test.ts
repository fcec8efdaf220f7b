// REGION_WRITE_MULTI: entries of 24 bytes, count ≤ 8, body exactly 8 + 24·wr_cnt.

import t from "tap";
import {
  checkRegionWriteMulti,
  decodeRegionWriteMulti,
  decodeRegionWriteMultiReply,
  Errno,
  encodeRegionWriteMulti,
  encodeRegionWriteMultiReply,
  ProtocolError,
  writeMultiCount,
  writeMultiDataAt,
  writeMultiEntryAt,
  writeMultiOffset,
  writeMultiOffsetNumber,
  writeMultiRegion,
} from "../../protocol/index.ts";
import * as fx from "../fixtures/protocol/hand-built.ts";
import { extend, hex, shorten, throwsErrno, toHex, withU32, withU64 } from "../fixtures/protocol/helpers.ts";

t.test("three coalesced writes", async (t) => {
  const body = hex(fx.writeMulti);
  const entries = decodeRegionWriteMulti(body);
  t.same(
    entries.map((e) => ({ ...e, data: toHex(e.data) })),
    [
      { offset: 0x1000n, region: 0, count: 4, data: "78563412" },
      { offset: 0x1002n, region: 0, count: 1, data: "ff" },
      { offset: 0x8n, region: 2, count: 8, data: "0102030405060708" },
    ],
  );
  t.equal(entries[0].data.buffer, body.buffer, "data is a view");
  t.equal(toHex(encodeRegionWriteMulti(entries)), fx.writeMulti);
  t.same(decodeRegionWriteMulti(hex("0000000000000000")), [], "zero entries");
});

t.test("reply", async (t) => {
  const r = decodeRegionWriteMultiReply(hex(fx.writeMultiReply));
  t.same(r, { wrCnt: 3n });
  t.equal(toHex(encodeRegionWriteMultiReply(r)), fx.writeMultiReply);
  throwsErrno(t, () => decodeRegionWriteMultiReply(hex("03000000")), Errno.EINVAL, /must be 8/);
  throwsErrno(t, () => decodeRegionWriteMultiReply(extend(hex(fx.writeMultiReply))), Errno.EINVAL);
});

t.test("errors", async (t) => {
  const body = hex(fx.writeMulti);
  const cases: [string, Uint8Array, RegExp][] = [
    ["no wr_cnt", body.subarray(0, 7), /at least 8/],
    ["an entry cut short", shorten(body), /does not fit/],
    ["an extra byte", extend(body), /must be 80/],
    ["an extra entry", extend(body, 24), /must be 80/],
    ["wr_cnt too large", withU64(body, 0, 4n), /wr_cnt 4 does not fit/],
    ["wr_cnt 2^64-1", withU64(body, 0, (1n << 64n) - 1n), /does not fit/],
    ["wr_cnt too small", withU64(body, 0, 2n), /must be 56/],
    ["count 9", withU32(body, 8 + 24 + 12, 9), /entry 1 has count 9/],
  ];
  for (const [name, b, re] of cases) throwsErrno(t, () => decodeRegionWriteMulti(b), Errno.EINVAL, re, name);
  t.throws(
    () => encodeRegionWriteMulti([{ offset: 0n, region: 0, count: 9, data: new Uint8Array(9) }]),
    RangeError,
  );
  t.throws(
    () => encodeRegionWriteMulti([{ offset: 0n, region: 0, count: 2, data: new Uint8Array(1) }]),
    RangeError,
  );
});

t.test(
  "the in-place readers agree with the decoder, and the check throws what the decoder throws",
  async (t) => {
    const offsets = [0n, 1n, 0xffff_ffffn, 0x1_0000_0000n, (1n << 53n) - 1n, 1n << 53n, (1n << 64n) - 1n];
    const entries = offsets.map((offset, i) => ({
      offset,
      region: i * 0x1000_0001,
      count: i % 9,
      data: Uint8Array.from({ length: i % 9 }, (_, j) => i * 16 + j),
    }));
    const body = encodeRegionWriteMulti(entries);
    t.equal(checkRegionWriteMulti(body), entries.length);
    const decoded = decodeRegionWriteMulti(body);
    decoded.forEach((d, i) => {
      const at = writeMultiEntryAt(i);
      t.equal(writeMultiOffset(body, at), d.offset);
      const n = writeMultiOffsetNumber(body, at);
      if (d.offset < 1n << 53n) t.equal(n, Number(d.offset), `offset ${d.offset} as a number`);
      else t.equal(n, -1, `offset ${d.offset} is -1`);
      t.equal(writeMultiRegion(body, at), d.region);
      t.equal(writeMultiCount(body, at), d.count);
      t.same(body.subarray(writeMultiDataAt(at), writeMultiDataAt(at) + d.count), d.data);
    });
    const message = (f: () => unknown) => {
      try {
        f();
        return "none";
      } catch (err) {
        t.ok(err instanceof ProtocolError);
        return `${(err as ProtocolError).errno} ${(err as Error).message}`;
      }
    };
    const bad = [
      shorten(body, 3),
      withU64(body, 0, 1n << 32n),
      withU64(body, 0, 8n),
      withU32(body, 8 + 24 * 3 + 12, 9),
      extend(body, 24),
      new Uint8Array(0),
    ];
    for (const b of bad) {
      const expected = message(() => decodeRegionWriteMulti(b));
      t.not(expected, "none");
      t.equal(
        message(() => checkRegionWriteMulti(b)),
        expected,
      );
    }
  },
);
