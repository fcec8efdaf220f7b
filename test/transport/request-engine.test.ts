// The request/reply engine on its own, over an in-memory pair whose far end is the test: msg_id
// allocation (wrap, skipping ids still outstanding, the outstanding bound), the one timer and
// its timeouts, close, and every kind of reply (unknown id, wrong command, error, fds, raw).
import t from "tap";
import { native } from "../../native/index.ts";
import {
  Command,
  Errno,
  encodeErrorReply,
  encodeMessage,
  HeaderFlag,
  MemorySink,
  type ReceivedFrame,
  SinkLogger,
} from "../../src/index.ts";
import { createMemoryPair, type MemoryConnection } from "../../src/transport/memory-pair.ts";
import {
  RequestEngine,
  type RequestEngineOptions,
  RequestError,
  RequestLimits,
} from "../../src/transport/request-engine.ts";
import { openFdCount } from "../../src/util/fds.ts";
import { rejection } from "../helpers/harness.ts";

interface Rig {
  engine: RequestEngine;
  /** Requests as the far end received them. */
  seen: ReceivedFrame[];
  far: MemoryConnection;
  sink: MemorySink;
  unexpected: string[];
  /** Answer a received request (same id and command) with `body`, fds attached. */
  reply(req: ReceivedFrame, body?: Uint8Array | null, fds?: number[]): void;
  /** The next request the far end receives. */
  next(): Promise<ReceivedFrame>;
}

function rig(opts: Partial<RequestEngineOptions> = {}): Rig {
  const [near, far] = createMemoryPair();
  const sink = new MemorySink();
  const unexpected: string[] = [];
  const engine = new RequestEngine(near, {
    timeoutMs: 5000,
    log: new SinkLogger(sink, "debug"),
    onUnexpected: (_f, why) => unexpected.push(why),
    ...opts,
  });
  near.setHandlers({
    onFrame: (f) => engine.handleReply(f),
    onClose: (err) => engine.close(err?.message),
  });
  const seen: ReceivedFrame[] = [];
  const unread: ReceivedFrame[] = [];
  const waiters: ((f: ReceivedFrame) => void)[] = [];
  far.setHandlers({
    onFrame: (f) => {
      seen.push(f);
      const w = waiters.shift();
      if (w) w(f);
      else unread.push(f);
    },
    onClose: () => {},
  });
  return {
    engine,
    seen,
    far,
    sink,
    unexpected,
    reply(req, body = null, fds = []) {
      far.send(
        encodeMessage(
          { msgId: req.header.msgId, command: req.header.command, flags: HeaderFlag.REPLY },
          body,
        ),
        fds,
      );
    },
    next: () => {
      const f = unread.shift();
      return f ? Promise.resolve(f) : new Promise((resolve) => waiters.push(resolve));
    },
  };
}

t.test("msg_ids wrap from 0xffff to 0 and replies still match their requests", async (t) => {
  const r = rig();
  for (let i = 0; i < 0xfffe; i++) r.engine.allocId();
  const ids: number[] = [];
  for (let i = 0; i < 3; i++) {
    const p = r.engine.request(Command.DEVICE_RESET, null);
    const req = await r.next();
    ids.push(req.header.msgId);
    r.reply(req);
    t.equal((await p).header.msgId, req.header.msgId);
  }
  t.same(ids, [0xfffe, 0xffff, 0], "the id after 0xffff is 0");
  r.engine.close();
});

t.test(
  "an id still waiting for its reply is skipped until it is answered, and refused to raw use",
  async (t) => {
    const r = rig();
    const held = r.engine.request(Command.DEVICE_RESET, null);
    const first = await r.next();
    t.equal(first.header.msgId, 0);
    // One whole lap of the id space: the next allocation would be 0 again, which is outstanding.
    for (let i = 1; i < 0x10000; i++) r.engine.allocId();
    const p = r.engine.request(Command.DEVICE_RESET, null);
    const second = await r.next();
    t.equal(second.header.msgId, 1, "id 0 is skipped while its request waits");
    t.equal(
      await rejection(r.engine.expect(0, rawMessage(0, Command.DEVICE_RESET))),
      Errno.EBUSY,
      "a raw request may not take an id a request waits on",
    );
    r.reply(second);
    r.reply(first);
    await Promise.all([held, p]);
    t.equal(r.engine.outstanding, 0);
    r.engine.close();
  },
);

t.test("RequestLimits.maxOutstanding: exactly the limit may wait, one more is EBUSY", async (t) => {
  t.throws(
    () => new RequestEngine(createMemoryPair()[0], { timeoutMs: 1, maxOutstanding: 0x8001 }),
    RangeError,
  );
  const r = rig();
  // The far end does not answer: the requests pile up.
  const waiting: Promise<unknown>[] = [];
  for (let i = 0; i < RequestLimits.maxOutstanding; i++)
    waiting.push(r.engine.request(Command.DEVICE_RESET, null).catch((e) => e));
  t.equal(r.engine.outstanding, RequestLimits.maxOutstanding, "32,768 wait");
  const over = await rejection(r.engine.request(Command.DEVICE_RESET, null));
  t.equal(over, Errno.EBUSY, "the 32,769th is refused");
  t.equal(await rejection(r.engine.expect(0x9000, rawMessage(0x9000, Command.DEVICE_RESET))), Errno.EBUSY);
  // Allocation still finds a free id in the half-full space.
  const id = r.engine.allocId();
  t.ok(id >= RequestLimits.maxOutstanding, `a free id (${id}) past the outstanding ones`);
  r.engine.close("test over");
  const settled = await Promise.all(waiting);
  t.ok(
    settled.every((e) => e instanceof RequestError && e.errno === Errno.ENOTCONN),
    "close rejects all of them",
  );
});

t.test("a lowered bound frees up as replies arrive", async (t) => {
  const r = rig({ maxOutstanding: 2 });
  const a = r.engine.request(Command.DEVICE_RESET, null);
  const b = r.engine.request(Command.DEVICE_RESET, null);
  t.equal(await rejection(r.engine.request(Command.DEVICE_RESET, null)), Errno.EBUSY);
  const ra = await r.next();
  await r.next();
  r.reply(ra);
  await a;
  const c = r.engine.request(Command.DEVICE_RESET, null);
  r.reply(await r.next());
  await c;
  r.engine.close();
  t.equal(await rejection(b), Errno.ENOTCONN);
});

t.test("a request with no reply rejects with ETIMEDOUT; its late reply is unexpected", async (t) => {
  const r = rig({ timeoutMs: 40 });
  const started = performance.now();
  const p = r.engine.request(Command.DMA_READ, new Uint8Array(16));
  const req = await r.next();
  const err = await p.catch((e) => e);
  const waited = performance.now() - started;
  t.ok(err instanceof RequestError, "a RequestError");
  t.equal(err.errno, Errno.ETIMEDOUT);
  t.equal(err.command, Command.DMA_READ);
  t.match(err.message, /DMA_READ failed: ETIMEDOUT \(id=\d+: no reply within 40 ms\)/);
  t.ok(waited >= 39, `not before the timeout (${waited.toFixed(1)} ms)`);
  t.equal(r.engine.stats.timeouts, 1);
  r.reply(req, new Uint8Array(16));
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(r.engine.stats.unexpected, 1, "the late reply is counted");
  t.same(r.unexpected, ["no request waits for it"]);
  r.engine.close();
});

t.test(
  "one timer serves every request: later requests time out in order, each on its own deadline",
  async (t) => {
    const r = rig({ timeoutMs: 60 });
    const realSetTimeout = globalThis.setTimeout;
    let timers = 0;
    globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
      timers++;
      return realSetTimeout(...args);
    }) as typeof setTimeout;
    try {
      // 200 answered round trips arm the one timer once.
      for (let i = 0; i < 200; i++) {
        const p = r.engine.request(Command.DEVICE_RESET, null);
        r.reply(await r.next());
        await p;
      }
      t.equal(timers, 1, "200 requests, one timer");
    } finally {
      globalThis.setTimeout = realSetTimeout;
    }
    const order: string[] = [];
    const timed = (name: string) => {
      const sent = performance.now();
      return r.engine.request(Command.DEVICE_RESET, null).then(
        () => -1,
        () => {
          order.push(name);
          return performance.now() - sent;
        },
      );
    };
    const a = timed("a");
    await new Promise((resolve) => setTimeout(resolve, 25));
    const b = timed("b");
    const waitedA = await a;
    t.same(order, ["a"], "the older request times out first, the younger one still waits");
    const waitedB = await b;
    t.same(order, ["a", "b"]);
    t.ok(
      waitedA >= 59 && waitedB >= 59,
      `each waited its own 60 ms (${waitedA.toFixed(1)}, ${waitedB.toFixed(1)})`,
    );
    r.engine.close();
  },
);

t.test("close rejects every pending request and every later one with ENOTCONN", async (t) => {
  const r = rig();
  const p = [r.engine.request(Command.DMA_READ, null), r.engine.request(Command.DMA_WRITE, null)];
  r.far.close();
  for (const q of p) {
    const err = await q.catch((e) => e);
    t.equal(err.errno, Errno.ENOTCONN);
  }
  t.equal(r.engine.outstanding, 0);
  const later = await r.engine.request(Command.DMA_READ, null).catch((e) => e);
  t.equal(later.errno, Errno.ENOTCONN, "a request after the close");
  t.equal(await rejection(r.engine.expect(5, new Uint8Array(0))), Errno.ENOTCONN, "and a raw one");
});

t.test("a reply for an id no request waits on is counted, logged, and its fds closed", async (t) => {
  const r = rig();
  const fd = native.eventfd(0);
  const before = openFdCount();
  r.far.send(encodeErrorReply(1234, Command.DMA_READ, Errno.EIO), [fd]);
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(openFdCount(), before, "the fd that came with it is closed");
  t.equal(r.engine.stats.unexpected, 1);
  t.match(r.sink.text(), /warn unexpected reply DMA_READ id=1234 \(no request waits for it\): dropped/);
  native.close(fd);
  r.engine.close();
});

t.test("a reply carrying another command rejects its request with EINVAL and is counted", async (t) => {
  const r = rig();
  const p = r.engine.request(Command.DMA_READ, null);
  const req = await r.next();
  r.far.send(
    encodeMessage({ msgId: req.header.msgId, command: Command.DMA_WRITE, flags: HeaderFlag.REPLY }, null),
  );
  const err = await p.catch((e) => e);
  t.equal(err.errno, Errno.EINVAL);
  t.match(err.message, /DMA_READ failed: EINVAL \(the reply carried command DMA_WRITE\)/);
  t.equal(r.engine.stats.unexpected, 1);
  t.match(r.sink.text(), /unexpected reply DMA_WRITE id=\d+ \(it answers DMA_READ/);
  t.equal(r.engine.outstanding, 0, "the request is settled, not left to time out");
  r.engine.close();
});

t.test("error replies reject with their errno (EIO for 0) and their fds are closed", async (t) => {
  const r = rig();
  const p = r.engine.request(Command.DMA_READ, null);
  const req = await r.next();
  const fd = native.eventfd(0);
  const before = openFdCount();
  r.far.send(encodeErrorReply(req.header.msgId, Command.DMA_READ, Errno.EFAULT), [fd]);
  t.equal(await rejection(p), Errno.EFAULT);
  t.equal(openFdCount(), before, "the error reply's fd is closed");
  native.close(fd);
  const q = r.engine.request(Command.DMA_READ, null);
  const req2 = await r.next();
  r.far.send(encodeErrorReply(req2.header.msgId, Command.DMA_READ, 0));
  t.equal(await rejection(q), Errno.EIO, "an error reply that names no errno");
  r.engine.close();
});

t.test("reply fds: the caller's up to replyFds, otherwise all closed and EINVAL", async (t) => {
  const r = rig();
  const fd = native.eventfd(0);
  const before = openFdCount();
  const none = r.engine.request(Command.DEVICE_GET_REGION_INFO, null);
  r.reply(await r.next(), null, [fd]);
  const err = await none.catch((e) => e);
  t.equal(err.errno, Errno.EINVAL);
  t.match(err.message, /carried 1 fds, at most 0 expected/);
  t.equal(openFdCount(), before, "the unwanted fd is closed");
  const one = r.engine.request(Command.DEVICE_GET_REGION_INFO, null, { replyFds: 1 });
  r.reply(await r.next(), null, [fd]);
  const got = await one;
  t.equal(got.fds.length, 1, "the fd is handed over");
  t.equal(openFdCount(), before + 1);
  native.close(got.fds[0]!);
  native.close(fd);
  r.engine.close();
});

t.test("a raw request resolves with whatever its reply holds and allocation skips its id", async (t) => {
  const r = rig();
  const raw = rawMessage(0, Command.DEVICE_GET_INFO);
  const p = r.engine.expect(0, raw);
  const req = await r.next();
  t.equal(req.header.msgId, 0, "the caller's id");
  t.equal(r.engine.allocId(), 1, "the allocator steps over it");
  r.far.send(encodeErrorReply(0, Command.DMA_WRITE, Errno.ENOSYS));
  const reply = await p;
  t.equal(reply.header.error, Errno.ENOSYS, "an error reply of another command, resolved, not rejected");
  t.equal(r.engine.stats.unexpected, 0);
  r.engine.close();
});

t.test("an encoder that throws rejects the request and sends nothing", async (t) => {
  const r = rig();
  const err = await r.engine
    .send(Command.REGION_READ, () => {
      throw new RangeError("count does not fit");
    })
    .catch((e) => e);
  t.ok(err instanceof RangeError);
  t.equal(r.engine.outstanding, 0);
  t.equal(r.engine.stats.sent, 0);
  r.engine.close();
});

t.test("the error factory names the class of rejections", async (t) => {
  class Mine extends Error {}
  const r = rig({ error: (c, e, d) => new Mine(`${c}/${e}/${d}`) });
  r.engine.close("gone");
  const err = await r.engine.request(Command.DMA_READ, null).catch((e) => e);
  t.ok(err instanceof Mine);
  t.equal(err.message, `${Command.DMA_READ}/${Errno.ENOTCONN}/gone`);
});

function rawMessage(msgId: number, command: number): Uint8Array {
  return encodeMessage({ msgId, command, flags: HeaderFlag.COMMAND }, new Uint8Array(16));
}
