// REGION_WRITE_MULTI: entries of 24 bytes, count ≤ 8, body exactly 8 + 24·wr_cnt.

import t from "tap";
import {
  decodeRegionWriteMulti,
  decodeRegionWriteMultiReply,
  Errno,
  encodeRegionWriteMulti,
  encodeRegionWriteMultiReply,
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
