// REGION_READ / REGION_WRITE: body codecs, the one-allocation message encoders, errors, and a
// round-trip property.

import fc from "fast-check";
import t from "tap";
import {
  Command,
  decodeHeader,
  decodeRegionRead,
  decodeRegionReadReply,
  decodeRegionWrite,
  decodeRegionWriteReply,
  Errno,
  encodeRegionRead,
  encodeRegionReadMessage,
  encodeRegionReadReply,
  encodeRegionReadReplyMessage,
  encodeRegionWrite,
  encodeRegionWriteMessage,
  encodeRegionWriteReply,
  encodeRegionWriteReplyMessage,
  HEADER_SIZE,
  HeaderFlag,
  wantsReply,
} from "../../protocol/index.ts";
import * as fx from "../fixtures/protocol/hand-built.ts";
import { extend, hex, shorten, throwsErrno, toHex } from "../fixtures/protocol/helpers.ts";

t.test("a posted 8-byte write to BAR0", async (t) => {
  const msg = hex(fx.postedWrite8Message);
  const h = decodeHeader(msg);
  t.same(h, { msgId: 42, command: Command.REGION_WRITE, msgSize: 40, flags: HeaderFlag.NO_REPLY, error: 0 });
  t.equal(wantsReply(h.flags), false);
  const w = decodeRegionWrite(msg.subarray(HEADER_SIZE));
  t.same({ ...w, data: toHex(w.data) }, { offset: 0x1008n, region: 0, count: 8, data: "8877665544332211" });
  t.equal(w.data.buffer, msg.buffer, "data is a view into the message");
  t.equal(toHex(encodeRegionWrite(w)), toHex(msg.subarray(HEADER_SIZE)));
  t.equal(toHex(encodeRegionWriteMessage(42, HeaderFlag.NO_REPLY, w)), fx.postedWrite8Message);
});

t.test("a zero-count access answered header-only", async (t) => {
  t.same(decodeRegionReadReply(hex(fx.readReplyZeroCount)), {
    offset: 0n,
    region: 0,
    count: 0,
    data: new Uint8Array(0),
  });
  t.same(decodeRegionWriteReply(new Uint8Array(0)), {
    offset: 0n,
    region: 0,
    count: 0,
    data: new Uint8Array(0),
  });
  const zero = { offset: 4n, region: 7, count: 0, data: new Uint8Array(0) };
  t.same(decodeRegionReadReply(encodeRegionReadReply(zero)), zero, "an echoed zero-count head also decodes");
});

t.test("message encoders put header, head and data in one buffer", async (t) => {
  const a = { offset: 0x30n, region: 7, count: 4, data: hex("00f8ffff") };
  const read = encodeRegionReadMessage(5, a);
  t.equal(toHex(read), "05000900200000000000000000000000" + "3000000000000000" + "07000000" + "04000000");
  const reply = encodeRegionReadReplyMessage(5, a);
  t.same(decodeHeader(reply), { msgId: 5, command: 9, msgSize: 36, flags: 1, error: 0 });
  t.equal(toHex(reply.subarray(HEADER_SIZE)), toHex(encodeRegionReadReply(a)));
  const wreply = encodeRegionWriteReplyMessage(6, a);
  t.same(decodeHeader(wreply), { msgId: 6, command: 10, msgSize: 32, flags: 1, error: 0 });
  t.equal(toHex(wreply.subarray(HEADER_SIZE)), toHex(encodeRegionWriteReply(a)));
  t.equal(reply.byteOffset, 0);
  t.equal(reply.buffer.byteLength, reply.length, "exactly one allocation of the right size");
});

t.test("errors", async (t) => {
  const read = encodeRegionRead({ offset: 0n, region: 7, count: 4 });
  throwsErrno(t, () => decodeRegionRead(shorten(read)), Errno.EINVAL, /at least 16/);
  t.same(decodeRegionRead(extend(read)).count, 4, "extra bytes after a read request are ignored");
  const reply = encodeRegionReadReply({ offset: 0n, region: 7, count: 4, data: hex("01020304") });
  throwsErrno(t, () => decodeRegionReadReply(shorten(reply)), Errno.EINVAL, /must be 20/);
  throwsErrno(t, () => decodeRegionReadReply(extend(reply)), Errno.EINVAL, /must be 20/);
  throwsErrno(t, () => decodeRegionReadReply(read.subarray(0, 8)), Errno.EINVAL, /at least 16/);
  throwsErrno(t, () => decodeRegionReadReply(read), Errno.EINVAL, /must be 20/, "count 4 but no data");
  throwsErrno(t, () => decodeRegionWrite(read), Errno.EINVAL, /must be 20/);
  throwsErrno(t, () => decodeRegionWrite(extend(reply)), Errno.EINVAL, /must be 20/);
  throwsErrno(t, () => decodeRegionWrite(new Uint8Array(15)), Errno.EINVAL);
  throwsErrno(t, () => decodeRegionWriteReply(reply), Errno.EINVAL, /must be 16/);
  throwsErrno(t, () => decodeRegionWriteReply(hex("00")), Errno.EINVAL);
  t.throws(() => encodeRegionReadReply({ offset: 0n, region: 0, count: 2 }), RangeError, "data required");
  t.throws(() => encodeRegionWrite({ offset: 0n, region: 0, count: 2, data: hex("01") }), RangeError);
  t.throws(() => encodeRegionWriteMessage(1, 0x10, { offset: 0n, region: 0, count: 1 }), RangeError);
  t.throws(() => encodeRegionReadMessage(0x10000, { offset: 0n, region: 0, count: 1 }), RangeError);
  t.throws(() => encodeRegionRead({ offset: 1n << 64n, region: 0, count: 1 }), RangeError);
});

t.test("property: region accesses round-trip through bodies and messages", async (t) => {
  const access = fc.record({
    offset: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    region: fc.integer({ min: 0, max: 0xffffffff }),
    data: fc.uint8Array({ maxLength: 64 }),
  });
  fc.assert(
    fc.property(access, fc.integer({ min: 0, max: 0xffff }), ({ offset, region, data }, msgId) => {
      const a = { offset, region, count: data.length, data };
      const same = (
        b: { offset: bigint; region: number; count: number; data?: Uint8Array },
        withData: boolean,
      ): boolean =>
        b.offset === offset &&
        b.region === region &&
        b.count === data.length &&
        (!withData || (b.data !== undefined && toHex(b.data) === toHex(data)));
      if (!same(decodeRegionRead(encodeRegionRead(a)), false)) throw new Error("read");
      if (data.length > 0 && !same(decodeRegionReadReply(encodeRegionReadReply(a)), true))
        throw new Error("read reply");
      if (!same(decodeRegionWrite(encodeRegionWrite(a)), true)) throw new Error("write");
      if (!same(decodeRegionWriteReply(encodeRegionWriteReply(a)), false)) throw new Error("write reply");
      const msg = encodeRegionWriteMessage(msgId, HeaderFlag.NO_REPLY, a);
      const h = decodeHeader(msg);
      if (h.msgId !== msgId || h.msgSize !== msg.length || h.msgSize !== 32 + data.length)
        throw new Error("header");
      if (!same(decodeRegionWrite(msg.subarray(HEADER_SIZE)), true)) throw new Error("write message");
      const rmsg = encodeRegionReadReplyMessage(msgId, a);
      if (toHex(rmsg.subarray(HEADER_SIZE)) !== toHex(encodeRegionReadReply(a)))
        throw new Error("read reply message");
    }),
    { numRuns: 1000 },
  );
  t.pass("1000 accesses");
});
