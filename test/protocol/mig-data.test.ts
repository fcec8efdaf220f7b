// MIG_DATA_READ / MIG_DATA_WRITE: argsz, size and the data that size announces.

import t from "tap";
import {
  decodeMigDataRead,
  decodeMigDataReadReply,
  decodeMigDataWrite,
  Errno,
  encodeMigDataRead,
  encodeMigDataReadReply,
  encodeMigDataWrite,
} from "../../protocol/index.ts";
import * as fx from "../fixtures/protocol/hand-built.ts";
import { extend, hex, shorten, throwsErrno, toHex, withU32 } from "../fixtures/protocol/helpers.ts";

t.test("read request, short reply, write", async (t) => {
  const req = decodeMigDataRead(hex(fx.migDataReadRequest));
  t.same(req, { argsz: 0x1008, size: 4096 });
  t.equal(toHex(encodeMigDataRead(req)), fx.migDataReadRequest);

  const body = hex(fx.migDataReadReply);
  const reply = decodeMigDataReadReply(body);
  t.same({ ...reply, data: Buffer.from(reply.data).toString() }, { argsz: 13, size: 5, data: "hi!!!" });
  t.equal(reply.data.buffer, body.buffer, "data is a view");
  t.equal(toHex(encodeMigDataReadReply(reply)), fx.migDataReadReply);
  t.equal(
    decodeMigDataReadReply(extend(body, 100)).data.length,
    5,
    "padding after the data (libvfio-user) is ignored",
  );

  const w = decodeMigDataWrite(hex(fx.migDataWrite));
  t.same({ ...w, data: Buffer.from(w.data).toString() }, { argsz: 11, size: 3, data: "ABC" });
  t.equal(toHex(encodeMigDataWrite(w)), fx.migDataWrite);
});

t.test("errors", async (t) => {
  throwsErrno(t, () => decodeMigDataRead(shorten(hex(fx.migDataReadRequest))), Errno.EINVAL, /at least 8/);
  throwsErrno(t, () => decodeMigDataRead(withU32(hex(fx.migDataReadRequest), 0, 7)), Errno.EINVAL, /argsz 7/);
  throwsErrno(t, () => decodeMigDataReadReply(shorten(hex(fx.migDataReadReply))), Errno.EINVAL, /of size 5/);
  throwsErrno(
    t,
    () => decodeMigDataReadReply(withU32(hex(fx.migDataReadReply), 4, 0xffffffff)),
    Errno.EINVAL,
  );
  throwsErrno(t, () => decodeMigDataWrite(shorten(hex(fx.migDataWrite))), Errno.EINVAL, /of size 3/);
  throwsErrno(t, () => decodeMigDataWrite(hex("0800000000")), Errno.EINVAL, /at least 8/);
  t.throws(() => encodeMigDataReadReply({ argsz: 8, size: 2 }), RangeError, "data required");
  t.throws(() => encodeMigDataWrite({ argsz: 8, size: 2, data: new Uint8Array(3) }), RangeError);
});
