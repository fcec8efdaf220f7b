// DEVICE_GET_REGION_IO_FDS: request, the 40-byte spec entries, and the head-only retry reply.

import t from "tap";
import {
  decodeRegionIoFds,
  decodeRegionIoFdsReply,
  Errno,
  encodeRegionIoFds,
  encodeRegionIoFdsReply,
  IoFdType,
} from "../../protocol/index.ts";
import * as fx from "../fixtures/protocol/hand-built.ts";
import { extend, hex, shorten, throwsErrno, toHex, withU32 } from "../fixtures/protocol/helpers.ts";

const entries = [
  { offset: 0x100n, size: 4n, fdIndex: 0, type: IoFdType.IOEVENTFD, flags: 1, datamatch: 1n },
  {
    offset: 0x200n,
    size: 0x100n,
    fdIndex: 1,
    type: IoFdType.IOREGIONFD,
    flags: 0,
    datamatch: 0x0123456789abcdefn,
  },
];

t.test("request", async (t) => {
  const r = decodeRegionIoFds(hex(fx.ioFdsRequest));
  t.same(r, { argsz: 96, flags: 0, index: 2, count: 0 });
  t.equal(toHex(encodeRegionIoFds(r)), fx.ioFdsRequest);
});

t.test("full reply and head-only reply", async (t) => {
  const full = decodeRegionIoFdsReply(hex(fx.ioFdsReply));
  t.same(full, { argsz: 96, flags: 0, index: 2, count: 2, entries });
  t.equal(toHex(encodeRegionIoFdsReply(full, 96)), fx.ioFdsReply);
  t.equal(
    toHex(encodeRegionIoFdsReply({ flags: 0, index: 2, entries }, 95)),
    fx.ioFdsReplyHeadOnly,
    "argsz too small",
  );
  t.equal(toHex(encodeRegionIoFdsReply({ flags: 0, index: 2, entries }, 16)), fx.ioFdsReplyHeadOnly);
  const head = decodeRegionIoFdsReply(hex(fx.ioFdsReplyHeadOnly));
  t.same(head, { argsz: 96, flags: 0, index: 2, count: 2, entries: [] });
  t.equal(
    toHex(encodeRegionIoFdsReply({ argsz: 1, count: 7, flags: 0, index: 3, entries: [] }, 16)),
    "10000000000000000300000000000000",
    "argsz and count are computed, not copied",
  );
});

t.test("errors", async (t) => {
  throwsErrno(t, () => decodeRegionIoFds(shorten(hex(fx.ioFdsRequest))), Errno.EINVAL, /at least 16/);
  throwsErrno(t, () => decodeRegionIoFds(withU32(hex(fx.ioFdsRequest), 0, 8)), Errno.EINVAL, /argsz 8/);
  throwsErrno(
    t,
    () => decodeRegionIoFdsReply(shorten(hex(fx.ioFdsReply))),
    Errno.EINVAL,
    /must be 96 for 2 entries/,
  );
  throwsErrno(t, () => decodeRegionIoFdsReply(extend(hex(fx.ioFdsReply), 40)), Errno.EINVAL, /must be 96/);
  throwsErrno(t, () => decodeRegionIoFdsReply(withU32(hex(fx.ioFdsReply), 12, 0xffffffff)), Errno.EINVAL);
  throwsErrno(t, () => decodeRegionIoFdsReply(hex("0000")), Errno.EINVAL);
  t.throws(
    () => encodeRegionIoFdsReply({ flags: 0, index: 0, entries: [{ ...entries[0], fdIndex: -1 }] }, 4096),
    RangeError,
  );
});
