// Hostile SET_IRQS fds through a real socket: interrupt fds that are not eventfds, the wrong
// number of fds, fds without DATA_EVENTFD, more fds than max_msg_fds. Each is Errno.EINVAL, every fd
// that came is closed, and a correct SET_IRQS afterwards still delivers interrupts.

import { closeSync, openSync } from "node:fs";
import t from "tap";
import { native } from "../../native/index.ts";
import { Errno } from "../../protocol/index.ts";
import { Command, encodeSetIrqs, IrqSetFlag } from "../../src/index.ts";
import { openFdCount } from "../../src/util/fds.ts";
import { errnoOf, RawClient, Reg, startServer } from "./helpers.ts";

const TRIGGER_EVENTFD = IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER;

function setIrqs(flags: number, start: number, count: number, data: Uint8Array | null = null): Uint8Array {
  return encodeSetIrqs({ argsz: 20 + (data?.length ?? 0), flags, index: 0, start, count, data });
}

t.test("SET_IRQS with fds that are not eventfds, or the wrong number of fds, is EINVAL", async (t) => {
  const s = startServer();
  t.teardown(() => s.close());
  const start = openFdCount();
  const c = await RawClient.connect(s.path());
  const [sockA, sockB] = native.socketPair();
  const memfd = native.memfdCreate("not-an-eventfd", 4096, true);
  const dir = openSync(s.dir, "r");
  const ev = () => native.eventfd(0);
  const made: number[] = [sockA, sockB, memfd, dir];
  const mk = (fd: number) => {
    made.push(fd);
    return fd;
  };
  const cases: [string, Uint8Array, number[]][] = [
    ["a socket", setIrqs(TRIGGER_EVENTFD, 0, 1), [sockA]],
    ["a memfd", setIrqs(TRIGGER_EVENTFD, 0, 1), [memfd]],
    ["a directory", setIrqs(TRIGGER_EVENTFD, 0, 1), [dir]],
    ["an eventfd and a memfd", setIrqs(TRIGGER_EVENTFD, 0, 2), [mk(ev()), memfd]],
    ["two eventfds for one vector", setIrqs(TRIGGER_EVENTFD, 0, 1), [mk(ev()), mk(ev())]],
    [
      "an eventfd with DATA_NONE",
      setIrqs(IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER, 0, 1),
      [mk(ev())],
    ],
    [
      "an eventfd with DATA_BOOL",
      setIrqs(IrqSetFlag.DATA_BOOL | IrqSetFlag.ACTION_TRIGGER, 0, 1, new Uint8Array([1])),
      [mk(ev())],
    ],
    ["vectors past the index", setIrqs(TRIGGER_EVENTFD, 3, 2), [mk(ev()), mk(ev())]],
    [
      "nine fds (max_msg_fds is 8)",
      setIrqs(TRIGGER_EVENTFD, 0, 4),
      Array.from({ length: 9 }, () => mk(ev())),
    ],
  ];
  for (const [what, body, fds] of cases) {
    t.equal(errnoOf(await c.request(Command.DEVICE_SET_IRQS, body, fds)), Errno.EINVAL, `${what}: EINVAL`);
  }
  t.match(s.sink.text(), /must be an eventfd/, "the log names the problem");

  // The session goes on, and a correct binding works.
  const good = ev();
  t.equal(errnoOf(await c.request(Command.DEVICE_SET_IRQS, setIrqs(TRIGGER_EVENTFD, 2, 1), [good])), 0);
  t.equal(await c.write32(0, Reg.RAISE, 2), 0);
  t.equal(native.eventfdRead(good), 1, "vector 2 fired through its eventfd");

  c.close();
  const session = s.endpoints[0]!.session;
  if (session) await session.ended;
  for (const fd of [...made, good]) closeSync(fd);
  t.equal(
    openFdCount(),
    start,
    "every fd the server got was closed (refused ones at once, the bound one at disconnect)",
  );
});
