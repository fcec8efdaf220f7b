// The 16-byte header, the whole-message helpers, and the constant tables.

import t from "tap";
import {
  Command,
  commandName,
  decodeHeader,
  Errno,
  encodeErrorReply,
  encodeHeader,
  encodeMessage,
  errnoName,
  FramingError,
  HEADER_SIZE,
  HeaderFlag,
  isErrorReply,
  isReply,
  ProtocolError,
  wantsReply,
} from "../../protocol/index.ts";
import { hex, throwsErrno, toHex } from "../fixtures/protocol/helpers.ts";

t.test("decode and encode a header", async (t) => {
  // msg_id 0x1234, REGION_WRITE, size 40, flags NO_REPLY, error 0
  const bytes = hex("3412 0a00 28000000 10000000 00000000");
  const h = decodeHeader(bytes);
  t.same(h, { msgId: 0x1234, command: 10, msgSize: 40, flags: 0x10, error: 0 });
  const out = new Uint8Array(20);
  encodeHeader(h, out, 4);
  t.equal(toHex(out.subarray(4)), toHex(bytes));
  t.same(decodeHeader(out, 4), h, "at an offset");
  const big = hex("ffff ffff ffffffff ffffffff ffffffff");
  t.same(decodeHeader(big), {
    msgId: 0xffff,
    command: 0xffff,
    msgSize: 0xffffffff,
    flags: 0xffffffff,
    error: 0xffffffff,
  });
});

t.test("decodeHeader never reads out of bounds", async (t) => {
  throwsErrno(t, () => decodeHeader(new Uint8Array(15)), Errno.EINVAL, /header/);
  throwsErrno(t, () => decodeHeader(new Uint8Array(20), 5), Errno.EINVAL);
  throwsErrno(t, () => decodeHeader(new Uint8Array(20), -1), Errno.EINVAL);
  throwsErrno(t, () => decodeHeader(new Uint8Array(40), 1.5), Errno.EINVAL);
});

t.test("encodeHeader refuses values that do not fit", async (t) => {
  const ok = { msgId: 1, command: 1, msgSize: 16, flags: 0, error: 0 };
  const out = new Uint8Array(16);
  t.throws(() => encodeHeader({ ...ok, msgId: 0x10000 }, out), RangeError);
  t.throws(() => encodeHeader({ ...ok, command: -1 }, out), RangeError);
  t.throws(() => encodeHeader({ ...ok, msgSize: 2 ** 32 }, out), RangeError);
  t.throws(() => encodeHeader({ ...ok, flags: 1.5 }, out), RangeError);
  t.throws(() => encodeHeader(ok, new Uint8Array(15)), RangeError);
  t.throws(() => encodeHeader(ok, out, 1), RangeError);
});

t.test("encodeMessage computes msg_size", async (t) => {
  const m = encodeMessage(
    { msgId: 7, command: Command.DEVICE_GET_INFO, flags: 0 },
    hex("10000000 00000000 00000000 00000000"),
  );
  t.equal(toHex(m), "07000400200000000000000000000000" + "10000000000000000000000000000000");
  const empty = encodeMessage({ msgId: 7, command: Command.DEVICE_RESET, flags: HeaderFlag.REPLY }, null);
  t.equal(toHex(empty), "07000d00100000000100000000000000");
  t.equal(encodeMessage({ msgId: 1, command: 1, flags: 0, error: 5 }).length, HEADER_SIZE);
  t.equal(decodeHeader(encodeMessage({ msgId: 1, command: 1, flags: 0x21, error: 5 })).error, 5);
});

t.test("encodeErrorReply is header-only with REPLY|ERROR", async (t) => {
  const m = encodeErrorReply(0x42, Command.REGION_READ, Errno.EINVAL);
  t.equal(toHex(m), "42000900100000002100000016000000");
  t.ok(isErrorReply(decodeHeader(m).flags));
});

t.test("flag helpers", async (t) => {
  t.equal(isReply(0x1), true);
  t.equal(isReply(0x21), true);
  t.equal(isReply(0x0), false);
  t.equal(isReply(0x11), true, "NO_REPLY bit does not change the type");
  t.equal(wantsReply(0x0), true);
  t.equal(wantsReply(0x10), false, "posted command");
  t.equal(wantsReply(0x1), false, "a reply wants no reply");
  t.equal(isErrorReply(0x1), false);
  t.equal(isErrorReply(0x20), false, "ERROR without the REPLY type");
});

t.test("constant tables and names", async (t) => {
  t.equal(HEADER_SIZE, 16);
  t.equal(commandName(Command.DMA_MAP), "DMA_MAP");
  t.equal(commandName(18), "MIG_DATA_WRITE");
  t.equal(commandName(14), "UNKNOWN(14)", "DIRTY_PAGES was removed");
  t.equal(commandName(99), "UNKNOWN(99)");
  t.equal(errnoName(22), "EINVAL");
  t.equal(errnoName(110), "ETIMEDOUT");
  t.equal(errnoName(4), "UNKNOWN(4)");
  t.equal(Object.keys(Command).length, 17);
});

t.test("error classes", async (t) => {
  const p = new ProtocolError(Errno.EINVAL, "bad");
  t.ok(p instanceof Error);
  t.match(p, { name: "ProtocolError", errno: 22, message: "bad" });
  const h = { msgId: 1, command: 2, msgSize: 3, flags: 0, error: 0 };
  const f = new FramingError(Errno.E2BIG, "too big", h);
  t.match(f, { name: "FramingError", errno: 7, header: h });
  t.equal(new FramingError(Errno.EINVAL, "x").header, null);
});
