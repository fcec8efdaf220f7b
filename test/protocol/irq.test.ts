// DEVICE_GET_IRQ_INFO and DEVICE_SET_IRQS: structure checks (flags, sizes), not device ranges.

import t from "tap";
import {
  decodeIrqInfo,
  decodeSetIrqs,
  Errno,
  encodeIrqInfo,
  encodeSetIrqs,
  IrqSetFlag,
  irqSetAction,
  irqSetData,
  PciIrq,
} from "../../protocol/index.ts";
import * as fx from "../fixtures/protocol/hand-built.ts";
import { extend, hex, shorten, throwsErrno, toHex, withU32 } from "../fixtures/protocol/helpers.ts";

t.test("IRQ info", async (t) => {
  const body = hex("10000000 01000000 02000000 00080000"); // argsz 16, EVENTFD, MSIX, 2048 vectors
  const i = decodeIrqInfo(body);
  t.same(i, { argsz: 16, flags: 1, index: PciIrq.MSIX, count: 2048 });
  t.equal(toHex(encodeIrqInfo(i)), toHex(body));
  throwsErrno(t, () => decodeIrqInfo(shorten(body)), Errno.EINVAL, /at least 16/);
  throwsErrno(t, () => decodeIrqInfo(withU32(body, 0, 4)), Errno.EINVAL, /argsz 4/);
  t.throws(() => encodeIrqInfo({ ...i, count: -1 }), RangeError);
});

t.test("SET_IRQS forms QEMU sends", async (t) => {
  const noFd = decodeSetIrqs(hex(fx.setIrqsMsixEnableNoFd));
  t.same(noFd, { argsz: 20, flags: 0x24, index: 2, start: 0, count: 1, data: null });
  t.equal(irqSetData(noFd.flags), IrqSetFlag.DATA_EVENTFD);
  t.equal(irqSetAction(noFd.flags), IrqSetFlag.ACTION_TRIGGER);
  t.equal(toHex(encodeSetIrqs(noFd)), fx.setIrqsMsixEnableNoFd);

  const unmask = decodeSetIrqs(hex(fx.setIrqsIntxUnmaskNone));
  t.same(unmask, { argsz: 20, flags: 0x11, index: 0, start: 0, count: 1, data: null });
  t.equal(toHex(encodeSetIrqs(unmask)), fx.setIrqsIntxUnmaskNone);
});

t.test("SET_IRQS with DATA_BOOL", async (t) => {
  const body = hex(fx.setIrqsBoolTrigger);
  const s = decodeSetIrqs(body);
  t.same(
    { ...s, data: [...(s.data ?? [])] },
    { argsz: 23, flags: 0x22, index: 1, start: 2, count: 3, data: [1, 0, 1] },
  );
  t.equal(s.data?.buffer, body.buffer, "data is a view");
  t.equal(toHex(encodeSetIrqs(s)), fx.setIrqsBoolTrigger);
});

t.test("SET_IRQS structure errors", async (t) => {
  const none = hex(fx.setIrqsMsixEnableNoFd);
  const bool = hex(fx.setIrqsBoolTrigger);
  const cases: [string, Uint8Array, RegExp][] = [
    ["short body", shorten(none), /at least 20/],
    ["argsz below 20", withU32(none, 0, 19), /argsz 19/],
    ["no data bit", withU32(none, 4, 0x20), /exactly one DATA_/],
    ["two data bits", withU32(none, 4, 0x26), /exactly one DATA_/],
    ["no action bit", withU32(none, 4, 0x04), /exactly one ACTION_/],
    ["two action bits", withU32(none, 4, 0x18 | 0x01), /exactly one ACTION_/],
    ["unknown bit", withU32(none, 4, 0x64), /unknown bits/],
    ["high unknown bit", withU32(none, 4, 0x80000024), /unknown bits/],
    ["payload without DATA_BOOL", extend(none), /must be 20/],
    ["BOOL data short", shorten(bool), /must be 23/],
    ["BOOL data long", extend(bool), /must be 23/],
    ["BOOL count huge", withU32(bool, 16, 0xffffffff), /DATA_BOOL/],
  ];
  for (const [name, body, re] of cases) throwsErrno(t, () => decodeSetIrqs(body), Errno.EINVAL, re, name);
});

t.test("encodeSetIrqs checks data against the flags", async (t) => {
  const s = decodeSetIrqs(hex(fx.setIrqsBoolTrigger));
  t.throws(() => encodeSetIrqs({ ...s, data: null }), RangeError);
  t.throws(() => encodeSetIrqs({ ...s, count: 2 }), RangeError);
  t.throws(() => encodeSetIrqs({ ...s, flags: 0x21 }), RangeError, "data without DATA_BOOL");
  t.equal(encodeSetIrqs({ ...s, flags: 0x21, data: new Uint8Array(0) }).length, 20);
});
