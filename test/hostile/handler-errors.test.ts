// A device model whose handlers throw or reject. The session answers each such command with Errno.EIO
// (or the errno of a VfuError the model threw on purpose), logs an error line with the cause for
// anything unexpected, and goes on; every other device in the process goes on too.

import t from "tap";
import { Errno } from "../../protocol/index.ts";
import { Command, defineDevice, VfuError } from "../../src/index.ts";
import { errnoOf, RawClient, scratchpad, startServer } from "./helpers.ts";

const faulty = defineDevice({
  name: "faulty",
  summary: "test device whose handlers fail",
  bus: "platform",
  regions: [{ index: 0, name: "regs", size: 0x100, accessSizes: [4] }],
  irqs: [],
  create() {
    let resets = 0;
    return {
      regions: {
        0: {
          read(offset) {
            if (offset === 0x0) throw new TypeError("a bug in the model's read handler");
            if (offset === 0x4) return Promise.reject(new Error("an async read that failed"));
            if (offset === 0x8) throw new VfuError(Errno.EBUSY, "the model says busy");
            if (offset === 0xc) return Promise.resolve(0x1234);
            return 0x5a5a5a5a;
          },
          write(offset) {
            if (offset === 0x0) throw new RangeError("a bug in the model's write handler");
            if (offset === 0x4) return Promise.reject(new Error("an async write that failed"));
          },
        },
      },
      reset() {
        resets++;
        if (resets % 2 === 1) throw new Error("reset failed");
      },
    };
  },
});

t.test("throwing and rejecting handlers: EIO, an error log line, and everything goes on", async (t) => {
  const s = startServer([faulty, scratchpad]);
  t.teardown(() => s.close());
  const c = await RawClient.connect(s.path(0));
  const other = await RawClient.connect(s.path(1));

  const readErrno = async (offset: number) => {
    const body = new Uint8Array(16);
    const v = new DataView(body.buffer);
    v.setBigUint64(0, BigInt(offset), true);
    v.setUint32(12, 4, true);
    return errnoOf(await c.request(Command.REGION_READ, body));
  };
  t.equal(await readErrno(0x0), Errno.EIO, "a read handler that throws: EIO");
  t.equal(await readErrno(0x4), Errno.EIO, "a read handler that rejects: EIO");
  t.equal(await readErrno(0x8), Errno.EBUSY, "a VfuError keeps its errno");
  t.equal(await c.write32(0, 0x0, 1), Errno.EIO, "a write handler that throws: EIO");
  t.equal(await c.write32(0, 0x4, 1), Errno.EIO, "a write handler that rejects: EIO");
  t.equal(errnoOf(await c.request(Command.DEVICE_RESET, null)), Errno.EIO, "a reset that throws: EIO");

  const errors = s.sink.lines.filter((l) => l.level === "error").map((l) => l.line);
  t.ok(
    errors.some((l) => /a bug in the model's read handler/.test(l)),
    "the TypeError is logged",
  );
  t.ok(
    errors.some((l) => /an async read that failed/.test(l)),
    "the rejection is logged",
  );
  t.ok(errors.some((l) => /a bug in the model's write handler/.test(l)));
  t.ok(errors.some((l) => /reset failed/.test(l)));
  t.notOk(
    errors.some((l) => /the model says busy/.test(l)),
    "a deliberate VfuError is not an error line",
  );

  // The session goes on: good accesses work, interleaved with failing ones.
  t.equal(await c.read32(0, 0xc), 0x1234, "an async read that succeeds");
  t.equal(await readErrno(0x0), Errno.EIO);
  t.equal(await c.read32(0, 0x10), 0x5a5a5a5a);
  t.equal(errnoOf(await c.request(Command.DEVICE_RESET, null)), 0, "the next reset works");
  // The other device never noticed.
  t.equal(await other.read32(0, 0), 0x56465531, "the other device answers");
  c.close();
  other.close();
});
