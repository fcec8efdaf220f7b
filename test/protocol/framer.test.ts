// The framer against the whole QEMU trace cut every possible way, with fds attached the way a
// Linux unix stream socket delivers them, plus the framing errors and fd hand-back rules.

import fc from "fast-check";
import t from "tap";
import {
  encodeMessage,
  type Frame,
  Framer,
  FramingError,
  HEADER_SIZE,
  HeaderFlag,
} from "../../protocol/index.ts";
import { hex, loadTrace } from "../fixtures/protocol/helpers.ts";

const MAX = 1048576 + 32;
const trace = loadTrace("memfd").messages;
const messages = trace.map((m) => hex(m.hex));
const starts: number[] = [];
const ends: number[] = [];
let total = 0;
for (const m of messages) {
  starts.push(total);
  total += m.length;
  ends.push(total);
}
const stream = new Uint8Array(total);
messages.forEach((m, i) => {
  stream.set(m, starts[i]);
});
// Fake fd numbers: message i carries fds 10000 + 10·i + j.
const fdsOf = trace.map((m, i) => Array.from({ length: m.fds }, (_, j) => 10000 + 10 * i + j));
const fdMessages = trace.map((m, i) => (m.fds > 0 ? i : -1)).filter((i) => i >= 0);

interface Chunk {
  start: number;
  end: number;
  fds: number[];
}

/**
 * What recvmsg() returns for a stream cut at `cuts`: Linux also ends a read right after a
 * segment that carried fds (each message is one segment, sent with its fds), and delivers the
 * fds with the read that takes the segment's first byte.
 */
function linuxChunks(cuts: Iterable<number>): Chunk[] {
  const points = new Set<number>([0, total]);
  for (const c of cuts) if (c > 0 && c < total) points.add(c);
  for (const i of fdMessages) points.add(ends[i]);
  const sorted = [...points].sort((a, b) => a - b);
  const chunks: Chunk[] = [];
  let fdIndex = 0;
  for (let k = 0; k + 1 < sorted.length; k++) {
    const chunk: Chunk = { start: sorted[k], end: sorted[k + 1], fds: [] };
    while (fdIndex < fdMessages.length && starts[fdMessages[fdIndex]] < chunk.end) {
      const i = fdMessages[fdIndex++];
      if (starts[i] >= chunk.start) chunk.fds.push(...fdsOf[i]);
    }
    chunks.push(chunk);
  }
  return chunks;
}

const scratch = new Uint8Array(total); // the caller's reused read buffer

/** Pushes the chunks through a scratch buffer that is clobbered after each push, then drains. */
function feed(chunks: Chunk[], framer = new Framer({ maxMessageSize: MAX })): Frame[] {
  const frames: Frame[] = [];
  for (const c of chunks) {
    const n = c.end - c.start;
    scratch.set(stream.subarray(c.start, c.end));
    framer.push(scratch.subarray(0, n), c.fds);
    scratch.fill(0xee, 0, n);
    for (let f = framer.next(); f !== null; f = framer.next()) frames.push(f);
  }
  return frames;
}

/** "" when the frames are exactly the trace's messages with their own fds, else the first problem. */
function check(frames: Frame[]): string {
  if (frames.length !== messages.length) return `${frames.length} frames, expected ${messages.length}`;
  for (let i = 0; i < frames.length; i++) {
    const f = frames[i];
    const want = messages[i];
    if (f.header.msgId !== trace[i].msgId || f.header.msgSize !== want.length) return `frame ${i}: header`;
    if (Buffer.compare(f.body, want.subarray(HEADER_SIZE)) !== 0) return `frame ${i}: body differs`;
    const fds = fdsOf[i];
    if (f.fds.length !== fds.length || f.fds.some((fd, j) => fd !== fds[j])) {
      return `frame ${i}: fds [${f.fds}] expected [${fds}]`;
    }
  }
  return "";
}

t.test("the whole trace in one chunk", async (t) => {
  const framer = new Framer({ maxMessageSize: MAX });
  const frames = feed(linuxChunks([]), framer);
  t.equal(check(frames), "");
  t.equal(framer.buffered, 0);
  t.same(framer.takePendingFds(), []);
});

t.test("the trace split in two at every byte offset, fds as Linux delivers them", async (t) => {
  let failures = 0;
  let first = "";
  for (let k = 0; k <= total; k++) {
    const problem = check(feed(linuxChunks([k])));
    if (problem !== "") {
      failures++;
      first ||= `split at ${k}: ${problem}`;
    }
  }
  t.equal(first, "", "no split misframes");
  t.equal(failures, 0, `all ${total + 1} splits give the same frames and fd attribution`);
});

t.test("two messages per chunk (a chunk ends after a message that carries fds)", async (t) => {
  const cuts: number[] = [];
  for (let i = 1; i < messages.length; i += 2) cuts.push(ends[i]);
  const chunks = linuxChunks(cuts);
  t.ok(chunks.length < messages.length, "chunks hold several messages");
  t.equal(check(feed(chunks)), "");
});

t.test("one byte at a time", async (t) => {
  const cuts = Array.from({ length: total }, (_, i) => i);
  t.equal(check(feed(linuxChunks(cuts))), "");
});

t.test("property: any cutting of the stream gives the same frames", async (t) => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: total - 1 }), { maxLength: 60 }), (cuts) => {
      const problem = check(feed(linuxChunks(cuts)));
      if (problem !== "") throw new Error(problem);
    }),
    { numRuns: 300 },
  );
  t.pass("300 random cuttings");
});

// --- the FD rule in isolation ---

const msg = (msgId: number, bodyLength: number, flags: number = HeaderFlag.COMMAND): Uint8Array =>
  encodeMessage({ msgId, command: 8, flags }, new Uint8Array(bodyLength).fill(msgId));
const cat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(parts.flatMap((p) => [...p]));

t.test("fds belong to the message holding the chunk's last byte", async (t) => {
  const framer = new Framer({ maxMessageSize: 1024 });
  framer.push(cat(msg(1, 4), msg(2, 4)), [7]);
  const a = framer.next();
  const b = framer.next();
  t.same(a?.fds, [], "first message of the chunk gets nothing");
  t.same(b?.fds, [7], "the message with the last byte gets the fds");

  framer.push(cat(msg(3, 4), msg(4, 4).subarray(0, 10)), [8, 9]);
  t.same(framer.next()?.fds, [], "a complete message before the partial one gets nothing");
  t.equal(framer.next(), null, "the partial message is not out yet");
  framer.push(msg(4, 4).subarray(10), []);
  t.same(framer.next()?.fds, [8, 9], "the partial message's fds arrive with it");

  framer.push(new Uint8Array(0), [11]);
  framer.push(msg(5, 0));
  t.same(framer.next()?.fds, [11], "fds pushed with an empty chunk go to the next message to complete");
  t.same(framer.takePendingFds(), []);
});

t.test("takePendingFds hands back the fds of an incomplete message", async (t) => {
  const framer = new Framer({ maxMessageSize: 1024 });
  const m = msg(1, 20);
  framer.push(m.subarray(0, 5), [3]);
  t.equal(framer.buffered, 5, "5 header bytes staged");
  framer.push(m.subarray(5, 25), [4]);
  t.equal(framer.buffered, 25);
  t.equal(framer.next(), null);
  t.same(framer.takePendingFds(), [3, 4], "teardown gets both");
  t.same(framer.takePendingFds(), [], "and only once");
  framer.push(m.subarray(25));
  const f = framer.next();
  t.same(f?.fds, [], "the completed message no longer claims them");
  t.equal(f?.body.length, 20);
  t.equal(framer.buffered, 0);
});

t.test("discard drops queued frames and returns every fd held", async (t) => {
  const framer = new Framer({ maxMessageSize: 1024 });
  framer.push(msg(1, 4), [1]);
  framer.push(msg(2, 4), [2]);
  framer.push(msg(3, 4).subarray(0, 3), [3]);
  t.equal(framer.buffered, 20 + 20 + 3);
  t.same(framer.discard().sort(), [1, 2, 3]);
  t.equal(framer.buffered, 0);
  t.equal(framer.next(), null);
  framer.push(msg(4, 0));
  t.equal(framer.next()?.header.msgId, 4, "usable afterwards");
});

t.test("bodies stay valid when the caller reuses its buffer", async (t) => {
  const framer = new Framer({ maxMessageSize: 1024 });
  const buf = cat(msg(1, 8), msg(2, 8).subarray(0, 20));
  framer.push(buf);
  buf.fill(0);
  framer.push(msg(2, 8).subarray(20));
  const a = framer.next();
  const b = framer.next();
  t.same([...(a?.body ?? [])], Array(8).fill(1), "whole-body slice is a copy");
  t.same([...(b?.body ?? [])], Array(8).fill(2), "assembled body is a copy");
  t.equal(framer.next(), null);
});

t.test("a header-only message has an empty body", async (t) => {
  const framer = new Framer({ maxMessageSize: 16 });
  framer.push(encodeMessage({ msgId: 9, command: 13, flags: HeaderFlag.REPLY }));
  const f = framer.next();
  t.equal(f?.body.length, 0);
  t.equal(f?.header.flags, HeaderFlag.REPLY);
});

// --- framing errors ---

function header(msgId: number, msgSize: number, flags: number): Uint8Array {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  v.setUint16(0, msgId, true);
  v.setUint16(2, 9, true);
  v.setUint32(4, msgSize, true);
  v.setUint32(8, flags, true);
  return h;
}

const badHeaders = [
  { name: "msg_size below 16", bytes: header(5, 8, 0), errno: 22, re: /below the header/ },
  { name: "msg_size 0", bytes: header(5, 0, 0), errno: 22, re: /msg_size 0/ },
  { name: "msg_size over the limit", bytes: header(5, 1025, 0), errno: 7, re: /over the limit/ },
  { name: "msg_size 2^32-1", bytes: header(5, 0xffffffff, 1), errno: 7, re: /over the limit/ },
  { name: "type 2", bytes: header(5, 16, 2), errno: 22, re: /message type 2/ },
  { name: "type 0xf", bytes: header(5, 32, 0x3f), errno: 22, re: /message type 15/ },
];

for (const bad of badHeaders) {
  t.test(`framing error: ${bad.name}`, async (t) => {
    for (const split of [false, true]) {
      const framer = new Framer({ maxMessageSize: 1024 });
      const good = msg(4, 4);
      const input = cat(good, bad.bytes, msg(6, 4));
      if (split)
        for (let i = 0; i < input.length; i++) framer.push(input.subarray(i, i + 1), i === 30 ? [3] : []);
      else framer.push(input, [3]);
      t.equal(framer.next()?.header.msgId, 4, "the good message before it comes out first");
      t.equal(framer.failed, true);
      let err: unknown;
      try {
        framer.next();
      } catch (e) {
        err = e;
      }
      t.ok(err instanceof FramingError, "FramingError");
      t.match(err, { errno: bad.errno, message: bad.re, header: { msgId: 5 } });
      t.throws(() => framer.next(), err as Error, "stays failed");
      framer.push(msg(7, 4), [8]);
      t.throws(() => framer.next(), err as Error, "later bytes are dropped");
      t.same(framer.takePendingFds(), [3, 8], "every fd it still holds, for closing");
    }
  });
}

t.test("msg_size exactly at the limit is accepted, flags NO_REPLY/ERROR do not matter", async (t) => {
  const framer = new Framer({ maxMessageSize: 64 });
  framer.push(msg(1, 48, HeaderFlag.NO_REPLY));
  framer.push(msg(2, 0, HeaderFlag.REPLY | HeaderFlag.ERROR));
  t.equal(framer.next()?.header.msgSize, 64);
  t.equal(framer.next()?.header.flags, 0x21);
  t.equal(framer.next(), null);
});

t.test("constructor limits", async (t) => {
  for (const bad of [8, 15, 16.5, 2 ** 32, Number.NaN]) {
    t.throws(() => new Framer({ maxMessageSize: bad }), RangeError, `maxMessageSize ${bad}`);
  }
  t.ok(new Framer({ maxMessageSize: 16 }));
});
