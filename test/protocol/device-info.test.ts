// DEVICE_GET_INFO: request and reply share one 16-byte layout.

import t from "tap";
import { DeviceFlag, decodeDeviceInfo, Errno, encodeDeviceInfo } from "../../protocol/index.ts";
import { extend, hex, shorten, throwsErrno, toHex, withU32 } from "../fixtures/protocol/helpers.ts";

t.test("a platform device with 3 regions and 2 interrupts", async (t) => {
  const body = hex("10000000 05000000 03000000 02000000");
  const d = decodeDeviceInfo(body);
  t.same(d, { argsz: 16, flags: DeviceFlag.RESET | DeviceFlag.PLATFORM, numRegions: 3, numIrqs: 2 });
  t.equal(toHex(encodeDeviceInfo(d)), toHex(body));
  t.same(decodeDeviceInfo(extend(body, 8)), d, "a larger struct (newer kernels' cap_offset) is accepted");
});

t.test("errors", async (t) => {
  const body = hex("10000000 03000000 09000000 05000000");
  throwsErrno(t, () => decodeDeviceInfo(shorten(body)), Errno.EINVAL, /at least 16/);
  throwsErrno(t, () => decodeDeviceInfo(new Uint8Array(0)), Errno.EINVAL);
  throwsErrno(t, () => decodeDeviceInfo(withU32(body, 0, 15)), Errno.EINVAL, /argsz 15/);
  t.throws(() => encodeDeviceInfo({ argsz: 16, flags: 0, numRegions: 2 ** 32, numIrqs: 0 }), RangeError);
});
