// DEVICE_RESET: no body either way.

import t from "tap";
import { Command, decodeDeviceReset, Errno, encodeDeviceReset, encodeMessage } from "../../protocol/index.ts";
import { throwsErrno, toHex } from "../fixtures/protocol/helpers.ts";

t.test("empty body both ways", async (t) => {
  t.equal(encodeDeviceReset().length, 0);
  t.doesNotThrow(() => decodeDeviceReset(new Uint8Array(0)));
  t.equal(
    toHex(encodeMessage({ msgId: 25, command: Command.DEVICE_RESET, flags: 0 }, encodeDeviceReset())),
    "19000d00100000000000000000000000",
  );
});

t.test("any body is EINVAL", async (t) => {
  throwsErrno(t, () => decodeDeviceReset(new Uint8Array(1)), Errno.EINVAL, /must be 0/);
  throwsErrno(t, () => decodeDeviceReset(new Uint8Array(16)), Errno.EINVAL);
});
