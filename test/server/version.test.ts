// VERSION: negotiation succeeds with QEMU's own request, and every malformed form gets its errno.
import t from "tap";
import {
  Command,
  createMemoryPair,
  encodeVersion,
  parseCapabilities,
  serveConnection,
  VfioUserClient,
} from "../../src/index.ts";
import { deviceFactory, memoryHarness, rawRequest, replyErrno } from "../helpers/harness.ts";

const QEMU_JSON =
  '{"capabilities": {"pgsizes": 4096, "max_msg_fds": 16, "max_dma_maps": 65535, "max_data_xfer_size": 1048576, "migration": {"max_bitmap_size": 268435456, "pgsize": 4096}, "write_multiple": true}}';

async function unnegotiated() {
  return memoryHarness({ client: { negotiate: false } });
}

t.test(
  "QEMU 11.1's VERSION request is answered 0.0 with compact JSON no larger than the request",
  async (t) => {
    const h = await unnegotiated();
    const body = encodeVersion({ major: 0, minor: 0, json: QEMU_JSON });
    const reply = await rawRequest(h.client, Command.VERSION, body);
    t.equal(replyErrno(reply), 0);
    t.ok(reply.header.msgSize <= 16 + body.length, "fits QEMU's receive buffer");
    t.equal(reply.fds.length, 0, "no fds to QEMU");
    const view = new DataView(reply.body.buffer, reply.body.byteOffset);
    t.equal(view.getUint16(0, true), 0);
    t.equal(view.getUint16(2, true), 0);
    t.equal(reply.body[reply.body.length - 1], 0, "NUL-terminated");
    const text = new TextDecoder().decode(reply.body.subarray(4, reply.body.length - 1));
    const caps = parseCapabilities(text);
    t.equal(caps.maxMsgFds, 8);
    t.equal(caps.maxDataXferSize, 1048576);
    t.equal(caps.pgsizes, 4096);
    t.equal(caps.maxDmaMaps, 65535);
    t.equal(caps.writeMultiple, true);
    t.notOk(text.includes("twin_socket"));
    await h.close();
  },
);

t.test("a VERSION with no JSON takes the defaults", async (t) => {
  const h = await unnegotiated();
  const reply = await rawRequest(
    h.client,
    Command.VERSION,
    encodeVersion({ major: 0, minor: 0, json: null }),
  );
  t.equal(replyErrno(reply), 0);
  t.equal(h.session.clientCaps?.maxMsgFds, 1);
  await h.close();
});

t.test("malformed VERSION requests get EINVAL and the session goes on", async (t) => {
  const h = await unnegotiated();
  const bad: [string, Uint8Array][] = [
    ["short body", new Uint8Array(2)],
    ["JSON without NUL", new Uint8Array([0, 0, 0, 0, 0x7b, 0x7d])],
    ["invalid JSON", encodeVersion({ major: 0, minor: 0, json: "{nope" })],
    ["capabilities not an object", encodeVersion({ major: 0, minor: 0, json: '{"capabilities": 3}' })],
    [
      "max_msg_fds over 1024",
      encodeVersion({ major: 0, minor: 0, json: '{"capabilities":{"max_msg_fds":1025}}' }),
    ],
    ["major version 1", encodeVersion({ major: 1, minor: 0, json: "{}" })],
  ];
  for (const [name, body] of bad) {
    const reply = await rawRequest(h.client, Command.VERSION, body);
    t.equal(replyErrno(reply), 22, name);
  }
  t.equal(h.session.negotiated, false);
  // max_msg_fds at the limit (1024) is accepted.
  const ok = await rawRequest(
    h.client,
    Command.VERSION,
    encodeVersion({ major: 0, minor: 0, json: '{"capabilities":{"max_msg_fds":1024}}' }),
  );
  t.equal(replyErrno(ok), 0);
  const again = await rawRequest(
    h.client,
    Command.VERSION,
    encodeVersion({ major: 0, minor: 0, json: "{}" }),
  );
  t.equal(replyErrno(again), 22, "a second VERSION is refused");
  await h.close();
});

t.test("a first message other than VERSION gets EINVAL and the connection closes", async (t) => {
  const [a, b] = createMemoryPair();
  const session = serveConnection(b, deviceFactory());
  const client = new VfioUserClient(a);
  const reply = await rawRequest(client, Command.DEVICE_GET_INFO, new Uint8Array(16));
  t.equal(replyErrno(reply), 22);
  await session.ended;
  await client.closedPromise;
  t.ok(client.closed);
  session.device.dispose();
});
