// Regression tests for the bugs the fuzzer found. Each test is named after the bug it guards.
import t from "tap";
import { scratchpad } from "../../devices/scratchpad/index.ts";
import { native } from "../../native/index.ts";
import {
  Command,
  createMemoryPair,
  Device,
  encodeMessage,
  encodeRegionInfo,
  encodeSetIrqs,
  encodeVersion,
  formatCapabilities,
  HeaderFlag,
  type ReceivedFrame,
  RegionFlag,
  serveConnection,
} from "../../src/index.ts";
import { closeFds } from "../../src/util/fds.ts";

/** A bare client end over the in-memory pair: sends raw messages, collects replies by msg_id. */
function bareClient(serverChunking?: number[]) {
  const [client, server] = createMemoryPair({ maxRecvFds: 16 }, { chunking: serverChunking });
  const session = serveConnection(server, (dma, log) => new Device(scratchpad, { dma, log }));
  const replies = new Map<number, (f: ReceivedFrame) => void>();
  client.setHandlers({
    onFrame: (f) => replies.get(f.header.msgId)?.(f),
    onClose: () => {},
  });
  let id = 0;
  const request = (command: number, body: Uint8Array | null) => {
    const msgId = ++id;
    const p = new Promise<ReceivedFrame>((resolve) => replies.set(msgId, resolve));
    client.send(encodeMessage({ msgId, command, flags: HeaderFlag.COMMAND }, body));
    return p;
  };
  const close = async () => {
    client.close();
    await session.ended;
    session.device.dispose();
  };
  return { request, close };
}

t.test("fuzz bug: a region fd was sent to a client that said it receives none (max_msg_fds 0)", async (t) => {
  for (const maxMsgFds of [0, 1]) {
    const c = bareClient();
    const json = formatCapabilities({ maxMsgFds, maxDataXferSize: 1 << 20 });
    await c.request(Command.VERSION, encodeVersion({ major: 0, minor: 0, json }));
    const body = encodeRegionInfo({ argsz: 256, flags: 0, index: 1, capOffset: 0, size: 0n, offset: 0n });
    const reply = await c.request(Command.DEVICE_GET_REGION_INFO, body);
    const flags = new DataView(reply.body.buffer, reply.body.byteOffset).getUint32(4, true);
    if (maxMsgFds === 0) {
      t.equal(reply.fds.length, 0, "max_msg_fds 0: no fd in the reply");
      t.equal(flags & RegionFlag.MMAP, 0, "and the region is not offered for mmap");
    } else {
      t.equal(reply.fds.length, 1, "max_msg_fds 1: the region's fd comes");
      t.equal(flags & RegionFlag.MMAP, RegionFlag.MMAP);
    }
    t.equal(flags & RegionFlag.READ, RegionFlag.READ, "the region stays readable by messages");
    closeFds(reply.fds);
    await c.close();
  }
});

t.test(
  "fuzz bug: the in-memory pair took minutes to deliver a large message cut into 1-byte chunks",
  async (t) => {
    // Delivery used Array.shift() per chunk: quadratic in the number of chunks. A 1 MiB message in
    // 1-byte chunks is a million chunks; it must now take well under this test's timeout.
    t.setTimeout(60_000);
    const c = bareClient([1]);
    await c.request(Command.VERSION, encodeVersion({ major: 0, minor: 0, json: null }));
    const count = 1 << 20;
    const body = new Uint8Array(16 + count);
    const v = new DataView(body.buffer);
    v.setUint32(8, 1, true); // region 1 (64 KiB): the write is refused, but only after framing
    v.setUint32(12, count, true);
    const reply = await c.request(Command.REGION_WRITE, body);
    t.equal(reply.header.error, 22, "the whole message was framed and answered (EINVAL: past the region)");
    await c.close();
  },
);

t.test(
  "fuzz bug: a first command with more fds than max_msg_fds left an unnegotiated connection open",
  async (t) => {
    const [client, server] = createMemoryPair({ maxRecvFds: 16 }, {});
    const session = serveConnection(server, (dma, log) => new Device(scratchpad, { dma, log }));
    let closed = false;
    const replies: ReceivedFrame[] = [];
    client.setHandlers({
      onFrame: (f) => replies.push(f),
      onClose: () => {
        closed = true;
      },
    });
    const fds = Array.from({ length: 9 }, () => native.eventfd(0));
    const body = encodeSetIrqs({ argsz: 20, flags: 0x24, index: 0, start: 0, count: 1, data: null });
    client.send(
      encodeMessage({ msgId: 7, command: Command.DEVICE_SET_IRQS, flags: HeaderFlag.COMMAND }, body),
      fds,
    );
    closeFds(fds);
    await session.ended;
    t.ok(closed, "the connection is closed");
    t.equal(replies.length, 1, "after one error reply");
    t.equal(replies[0]!.header.msgId, 7);
    t.equal(replies[0]!.header.error, 22);
    session.device.dispose();
  },
);
