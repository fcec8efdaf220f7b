// The client over the request engine, against a scripted server (the far end of an in-memory pair):
// which replies may carry fds, unexpected replies kept and counted, timeouts and close, SET_IRQS
// split at the server's max_msg_fds, and the errors it rejects with.
import t from "tap";
import { native } from "../../native/index.ts";
import {
  ClientDefaults,
  ClientError,
  Command,
  createMemoryPair,
  Errno,
  encodeDmaWrite,
  encodeErrorReply,
  encodeMessage,
  encodeRegionInfo,
  encodeVersion,
  formatCapabilities,
  HeaderFlag,
  IrqSetFlag,
  PciIrq,
  type ReceivedFrame,
  RequestError,
  VfioUserClient,
  VfuError,
} from "../../src/index.ts";
import { openFdCount } from "../../src/util/fds.ts";
import { rejection } from "../helpers/harness.ts";

type Answer = { body?: Uint8Array | null; fds?: number[]; errno?: number } | "silence";

/** A client and a scripted server: `answer` decides each reply (default: an empty success). */
async function scripted(answer: (f: ReceivedFrame) => Answer = () => ({}), opts = {}) {
  const [a, b] = createMemoryPair();
  const seen: ReceivedFrame[] = [];
  b.setHandlers({
    onFrame: (f) => {
      seen.push(f);
      if (f.header.flags & HeaderFlag.NO_REPLY) return;
      if (f.header.command === Command.VERSION) {
        const json = formatCapabilities({ maxMsgFds: 8, maxDataXferSize: 1 << 20 });
        const body = encodeVersion({ major: 0, minor: 0, json });
        b.send(
          encodeMessage({ msgId: f.header.msgId, command: f.header.command, flags: HeaderFlag.REPLY }, body),
        );
        return;
      }
      const r = answer(f);
      if (r === "silence") return;
      if (r.errno) b.send(encodeErrorReply(f.header.msgId, f.header.command, r.errno), r.fds);
      else
        b.send(
          encodeMessage(
            { msgId: f.header.msgId, command: f.header.command, flags: HeaderFlag.REPLY },
            r.body,
          ),
          r.fds,
        );
    },
    onClose: () => {},
  });
  const client = await VfioUserClient.over(a, opts);
  return { client, server: b, seen };
}

t.test("a reply carries fds only where the protocol puts them", async (t) => {
  const fd = native.eventfd(0);
  const { client } = await scripted((f) =>
    f.header.command === Command.DEVICE_GET_REGION_INFO
      ? { body: regionInfoBody(), fds: [fd] }
      : { body: new Uint8Array(16), fds: [fd] },
  );
  const before = openFdCount();
  const err = await client.getDeviceInfo().catch((e) => e);
  t.ok(err instanceof ClientError, "a ClientError");
  t.equal(err.errno, Errno.EINVAL, "DEVICE_GET_INFO with an fd is refused");
  t.equal(openFdCount(), before, "and the fd is closed");
  const info = await client.getRegionInfo(0);
  t.type(info.fd, "number", "DEVICE_GET_REGION_INFO hands its one fd over");
  t.equal(openFdCount(), before + 1);
  native.close(info.fd!);
  native.close(fd);
  client.close();
});

t.test("unexpected replies: the last ClientDefaults.keptUnexpectedReplies kept, all counted", async (t) => {
  const { client, server } = await scripted();
  const n = ClientDefaults.keptUnexpectedReplies + 6;
  for (let i = 0; i < n; i++) server.send(encodeErrorReply(0x8000 + i, Command.DMA_READ, Errno.EIO));
  await client.getDeviceInfo().catch(() => {}); // a round trip: every junk reply has arrived
  t.equal(client.stats.unexpected, n, `${n} counted`);
  t.equal(client.unexpected.length, ClientDefaults.keptUnexpectedReplies, "64 kept");
  t.equal(client.unexpected.at(-1)!.header.msgId, 0x8000 + n - 1, "the newest");
  t.equal(client.unexpected[0]!.header.msgId, 0x8000 + 6, "the oldest dropped first");
  client.close();
});

t.test("timeouts come from the client's option; close rejects what waits and what follows", async (t) => {
  const { client } = await scripted(() => "silence", { timeoutMs: 30 });
  const err = await client.reset().catch((e) => e);
  t.ok(err instanceof ClientError && err instanceof RequestError && err instanceof VfuError);
  t.equal(err.name, "ClientError");
  t.equal(err.errno, Errno.ETIMEDOUT);
  t.match(err.message, /DEVICE_RESET failed: ETIMEDOUT \(id=\d+: no reply within 30 ms\)/);
  const waiting = client.reset();
  client.close();
  t.equal(await rejection(waiting), Errno.ENOTCONN, "pending at close: ENOTCONN");
  t.equal(await rejection(client.getDeviceInfo()), Errno.ENOTCONN, "after close: ENOTCONN");
  t.equal(await rejection(client.sendRaw(new Uint8Array(16), [], 9)), Errno.ENOTCONN, "a raw one too");
});

t.test("a raw message may not reuse the id of a request still waiting", async (t) => {
  const { client, seen } = await scripted(() => "silence");
  const waiting = client.reset();
  await new Promise((resolve) => setImmediate(resolve));
  const id = seen.at(-1)!.header.msgId;
  const raw = VfioUserClient.rawMessage({ msgId: id, command: Command.DEVICE_RESET });
  t.equal(await rejection(client.sendRaw(raw, [], id)), Errno.EBUSY);
  client.close();
  await waiting.catch(() => {});
});

t.test(
  "enableInterrupts splits SET_IRQS at the server's max_msg_fds and closes its fds on failure",
  async (t) => {
    let refuse = false;
    const { client, seen } = await scripted((f) =>
      f.header.command === Command.DEVICE_SET_IRQS && refuse ? { errno: Errno.EINVAL } : {},
    );
    const fds = await client.enableInterrupts(PciIrq.MSIX, 2, 17);
    t.equal(fds.length, 17);
    const sets = seen.filter((f) => f.header.command === Command.DEVICE_SET_IRQS);
    t.same(
      sets.map((f) => f.fds.length),
      [8, 8, 1],
      "8 + 8 + 1 fds",
    );
    const dv = (f: ReceivedFrame) => new DataView(f.body.buffer, f.body.byteOffset, 20);
    t.same(
      sets.map((f) => [dv(f).getUint32(12, true), dv(f).getUint32(16, true)]),
      [
        [2, 8],
        [10, 8],
        [18, 1],
      ],
      "start and count of each",
    );
    t.equal(dv(sets[0]!).getUint32(4, true), IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER);
    for (const f of sets) for (const fd of f.fds) native.close(fd);
    refuse = true;
    const before = openFdCount();
    t.equal(await rejection(client.enableInterrupts(PciIrq.MSIX, 0, 3)), Errno.EINVAL);
    for (const fd of seen.at(-1)!.fds) native.close(fd); // the scripted server's copies
    t.equal(openFdCount(), before, "the eventfds made for a refused binding are closed");
    client.close();
  },
);

/** A DEVICE_GET_REGION_INFO reply body for region 0: 64 bytes, readable. */
function regionInfoBody(): Uint8Array {
  return encodeRegionInfo({ argsz: 32, flags: 1, index: 0, capOffset: 0, size: 64n, offset: 0n });
}

t.test("a server DMA_WRITE sent NO_REPLY is applied to message-backed memory and not answered", async (t) => {
  const { client, server, seen } = await scripted();
  const mem = await client.mapMessageMemory(0x1000n, 0x100);
  const body = encodeDmaWrite({ addr: 0x1010n, count: 2, data: Uint8Array.of(7, 9) }, "spec");
  for (const flags of [HeaderFlag.COMMAND | HeaderFlag.NO_REPLY, HeaderFlag.COMMAND]) {
    server.send(encodeMessage({ msgId: 0x7000 + flags, command: Command.DMA_WRITE, flags }, body));
  }
  await client.reset(); // a round trip: both writes have been served
  t.same([...mem.bytes.subarray(0x10, 0x12)], [7, 9]);
  t.equal(client.dmaServed.writes, 2, "both served");
  t.same(
    seen.filter((f) => f.header.command === Command.DMA_WRITE).map((f) => f.header.msgId),
    [0x7000 + HeaderFlag.COMMAND],
    "only the one that asked for a reply got one",
  );
  client.close();
});
