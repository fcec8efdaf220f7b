// Framing and dispatch errors: sizes, unknown commands, unexpected fds, NO_REPLY failures.
import t from "tap";
import { Reg } from "../../devices/scratchpad/index.ts";
import { native } from "../../native/index.ts";
import { Command, encodeErrorReply, HeaderFlag, Limits, VfioUserClient } from "../../src/index.ts";
import { openFdCount } from "../../src/util/fds.ts";
import { memoryHarness, rawRequest, replyErrno, settle, socketHarness } from "../helpers/harness.ts";

t.test("msg_size below 16 gets EINVAL and closes the broken stream", async (t) => {
  const h = await memoryHarness();
  const msg = VfioUserClient.rawMessage(
    { msgId: 77, command: Command.DEVICE_GET_INFO, msgSize: 15 },
    new Uint8Array(16),
  );
  const reply = await h.client.sendRaw(msg, [], 77);
  t.equal(replyErrno(reply!), 22);
  await h.session.ended;
  await h.client.closedPromise;
  t.ok(h.client.closed, "the server closed the connection");
  h.session.device.dispose();
});

t.test("msg_size above the limit gets E2BIG and closes the stream", async (t) => {
  const h = await memoryHarness();
  const msg = VfioUserClient.rawMessage({
    msgId: 78,
    command: Command.REGION_WRITE,
    msgSize: Limits.maxMessageSize + 1,
  });
  const reply = await h.client.sendRaw(msg, [], 78);
  t.equal(replyErrno(reply!), 7);
  await h.session.ended;
  h.session.device.dispose();
});

t.test("a message of exactly the size limit is framed (and refused only for its content)", async (t) => {
  const h = await memoryHarness();
  const count = Limits.maxMessageSize - 32;
  const body = new Uint8Array(16 + count);
  const dv = new DataView(body.buffer);
  dv.setUint32(8, 0, true);
  dv.setUint32(12, count, true);
  const reply = await rawRequest(h.client, Command.REGION_WRITE, body);
  t.equal(replyErrno(reply), 22, "count over max_data_xfer_size");
  t.equal(await h.client.regionRead32(0, Reg.ID), 0x56465531, "session goes on");
  await h.close();
});

t.test("an unknown command gets ENOSYS; a client-side-only command too", async (t) => {
  const h = await memoryHarness();
  t.equal(replyErrno(await rawRequest(h.client, 99, null)), 38);
  t.equal(replyErrno(await rawRequest(h.client, 14, new Uint8Array(8))), 38, "legacy DIRTY_PAGES");
  t.equal(replyErrno(await rawRequest(h.client, Command.DMA_READ, new Uint8Array(16))), 38);
  t.equal(await h.client.regionRead32(0, Reg.ID), 0x56465531);
  await h.close();
});

t.test("fds on a message that takes none are closed and answered EINVAL", async (t) => {
  const h = await memoryHarness();
  const before = openFdCount();
  const efd = native.eventfd(0);
  const reply = await rawRequest(h.client, Command.DEVICE_GET_INFO, new Uint8Array(16), { fds: [efd] });
  t.equal(replyErrno(reply), 22);
  native.close(efd);
  await settle();
  t.equal(openFdCount(), before, "the server closed its copy");
  await h.close();
});

t.test("a failing NO_REPLY command sends nothing and the session goes on", async (t) => {
  const h = await memoryHarness();
  const body = new Uint8Array(16 + 4);
  new DataView(body.buffer).setBigUint64(0, 0x1000n, true); // far outside region 0
  new DataView(body.buffer).setUint32(12, 4, true);
  await h.client.sendRaw(
    VfioUserClient.rawMessage({ msgId: 5, command: Command.REGION_WRITE, flags: HeaderFlag.NO_REPLY }, body),
  );
  await h.client.regionWrite32(0, Reg.SCRATCH, 7, { posted: true });
  t.equal(await h.client.regionRead32(0, Reg.SCRATCH), 7, "a posted write is applied before a later read");
  t.equal(h.client.unexpected.length, 0, "no reply to either NO_REPLY command");
  await h.close();
});

t.test("replies from the client with no request waiting are dropped with a log line", async (t) => {
  const h = await memoryHarness();
  await h.client.sendRaw(encodeErrorReply(1234, Command.DMA_READ, 5));
  t.equal(await h.client.regionRead32(0, Reg.ID), 0x56465531);
  t.match(h.sink.text(), /unexpected reply DMA_READ id=1234/);
  await h.close();
});

t.test(
  "over a real socket: more fds than max_msg_fds get EINVAL, none leak, the session goes on",
  async (t) => {
    const h = await socketHarness();
    const client = await h.connect();
    const before = openFdCount();
    const fds = Array.from({ length: Limits.maxMsgFds + 1 }, () => native.eventfd(0));
    const body = new Uint8Array(20);
    const dv = new DataView(body.buffer);
    dv.setUint32(0, 20, true);
    dv.setUint32(4, 0x24, true); // DATA_EVENTFD | ACTION_TRIGGER
    dv.setUint32(8, 0, true);
    dv.setUint32(16, fds.length, true);
    const reply = await rawRequest(client, Command.DEVICE_SET_IRQS, body, { fds });
    t.equal(replyErrno(reply), 22);
    for (const fd of fds) native.close(fd);
    await settle();
    t.equal(openFdCount(), before, "every received fd was closed");
    // Exactly max_msg_fds is accepted (index 0 has 4 vectors, so use 4 ≤ 8 here and 8 in limits).
    t.equal(await client.regionRead32(0, Reg.ID), 0x56465531);
    client.close();
    await h.close();
  },
);
