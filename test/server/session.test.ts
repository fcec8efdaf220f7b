// Session semantics: in-order processing with async handlers, single-step driving, server-to-
// client requests matched by msg_id, handler exceptions answered with EIO.
import t from "tap";
import {
  Command,
  createMemoryPair,
  Device,
  defineDevice,
  Errno,
  encodeMessage,
  encodeRegionRead,
  encodeVersion,
  HeaderFlag,
  MemorySink,
  SinkLogger,
  serveConnection,
  VfioUserClient,
} from "../../src/index.ts";
import { memoryHarness, rejection, u32 } from "../helpers/harness.ts";

/** A device whose register writes take a while (async) and whose reads are immediate. */
const slow = defineDevice({
  name: "slow",
  summary: "test: async handlers",
  bus: "platform",
  regions: [{ index: 0, name: "regs", size: 16, accessSizes: [4] }],
  irqs: [],
  create() {
    let value = 0;
    return {
      regions: {
        0: {
          read: (offset) => {
            if (offset === 8) throw new Error("register 8 is broken");
            if (offset === 12) return Promise.reject(new Error("register 12 rejects"));
            return value;
          },
          write: async (_offset, data) => {
            await new Promise((r) => setTimeout(r, 5));
            value = new DataView(data.buffer, data.byteOffset).getUint32(0, true);
          },
        },
      },
    };
  },
});

t.test("an async posted write completes before a later read is served", async (t) => {
  const h = await memoryHarness({ factory: (dma, log) => new Device(slow, { dma, log }) });
  await h.client.regionWrite32(0, 0, 1, { posted: true });
  await h.client.regionWrite32(0, 0, 2, { posted: true });
  t.equal(await h.client.regionRead32(0, 0), 2);
  await h.close();
});

t.test(
  "a handler that throws or rejects is answered EIO with an error log line; the session goes on",
  async (t) => {
    const h = await memoryHarness({ factory: (dma, log) => new Device(slow, { dma, log }) });
    t.equal(await rejection(h.client.regionRead32(0, 8)), 5);
    t.equal(await rejection(h.client.regionRead32(0, 12)), 5);
    t.match(
      h.sink.text(),
      /error REGION_READ id=\d+: handler error answered with EIO: Error: register 8 is broken/,
    );
    t.match(h.sink.text(), /register 12 rejects/);
    await h.client.regionWrite32(0, 0, 3);
    t.equal(await h.client.regionRead32(0, 0), 3);
    await h.close();
  },
);

t.test("single-step: a manual pair drives the session one message at a time, with no sleeps", async (t) => {
  const [a, b] = createMemoryPair({ manual: true });
  const session = serveConnection(b, (dma, log) => new Device(slow, { dma, log }));
  const client = new VfioUserClient(a);
  const version = client.request(Command.VERSION, encodeVersion({ major: 0, minor: 0, json: "{}" }));
  const read = client.request(Command.REGION_READ, encodeRegionRead({ offset: 0n, region: 0, count: 4 }));
  t.equal(b.pending, 2, "two messages wait at the server");
  t.equal(b.deliver(1), 1, "deliver exactly one");
  await Promise.resolve();
  t.equal(session.negotiated, true, "VERSION handled");
  t.equal(a.deliver(), 1, "its reply reaches the client");
  await version;
  t.equal(b.deliver(1), 1);
  t.equal(a.deliver(), 1);
  const r = await read;
  t.same([...r.body.subarray(16)], [0, 0, 0, 0]);
  client.close();
  b.deliver();
  await session.ended;
  session.device.dispose();
});

t.test("server-to-client requests are matched by msg_id while client commands interleave", async (t) => {
  const sink = new MemorySink();
  const [a, b] = createMemoryPair();
  const session = serveConnection(b, (dma, log) => new Device(slow, { dma, log }), {
    log: new SinkLogger(sink, "debug"),
  });
  const client = await VfioUserClient.over(a);
  const mem = await client.mapMessageMemory(0x1000n, 0x1000);
  mem.bytes.set([1, 2, 3, 4, 5, 6, 7, 8], 0);
  // Several DMA reads in flight at once, each answered by msg_id, with region traffic between.
  const reads = [0, 2, 4].map((o) => session.space.read(0x1000n + BigInt(o), 4));
  await client.regionWrite(0, 0, u32(9));
  const got = await Promise.all(reads);
  t.same(
    got.map((g) => [...g]),
    [
      [1, 2, 3, 4],
      [3, 4, 5, 6],
      [5, 6, 7, 8],
    ],
  );
  await session.space.write(0x1800n, new Uint8Array([0xee]));
  t.equal(mem.bytes[0x800], 0xee);
  // A DMA to memory the client does not have is answered with an error the device sees.
  client.close();
  await session.ended;
  session.device.dispose();
});

t.test("a server request still waiting when the client leaves is rejected with ENOTCONN", async (t) => {
  const [a, b] = createMemoryPair();
  const session = serveConnection(b, (dma, log) => new Device(slow, { dma, log }));
  const client = await VfioUserClient.over(a);
  await client.mapMessageMemory(0x1000n, 0x1000);
  const pending = session.request(Command.DMA_READ, new Uint8Array(16)); // malformed on purpose
  const rejected = rejection(pending);
  // The client answers the malformed request with an error or not at all; close it right away.
  client.close();
  t.equal(await rejected, 107);
  await session.ended;
  session.device.dispose();
});

t.test("replies to posted commands are never sent, even for commands that succeed", async (t) => {
  const h = await memoryHarness();
  const msg = VfioUserClient.rawMessage(
    { msgId: 9, command: Command.DEVICE_GET_INFO, flags: HeaderFlag.NO_REPLY },
    new Uint8Array([16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  );
  await h.client.sendRaw(msg);
  await h.client.getDeviceInfo();
  t.equal(h.client.unexpected.length, 0);
  await h.close();
});

t.test("a client reply naming another command fails the server's request at once, with EINVAL", async (t) => {
  const sink = new MemorySink();
  const [a, b] = createMemoryPair();
  const session = serveConnection(b, (dma, log) => new Device(slow, { dma, log }), {
    log: new SinkLogger(sink, "debug"),
  });
  a.setHandlers({
    onFrame: (f) =>
      a.send(
        encodeMessage({ msgId: f.header.msgId, command: Command.DMA_WRITE, flags: HeaderFlag.REPLY }, null),
      ),
    onClose: () => {},
  });
  t.equal(await rejection(session.request(Command.DMA_READ, new Uint8Array(16))), Errno.EINVAL);
  t.match(sink.text(), /warn unexpected reply DMA_WRITE id=\d+ \(it answers DMA_READ id=\d+\): dropped/);
  a.close();
  await session.ended;
  session.device.dispose();
});
