// Clients that do not play along, through real sockets: one that never reads its replies (the
// server's reply queue is bounded by Limits.maxQueuedReplyBytes, then the client is dropped with a
// warning), and one that sends half a message and stalls (the server keeps serving its other
// devices, refuses a second client on the busy device, and serves a later client once the staller
// is gone, with the fds of the half message closed).

import t from "tap";
import { pl061 } from "../../devices/pl061/index.ts";
import { native } from "../../native/index.ts";
import { Errno } from "../../protocol/index.ts";
import {
  Command,
  encodeDmaMap,
  encodeMessage,
  encodeRegionRead,
  encodeVersion,
  formatCapabilities,
  HeaderFlag,
  Limits,
} from "../../src/index.ts";
import { openFdCount } from "../../src/util/fds.ts";
import { errnoOf, RawClient, scratchpad, startServer, waitFor } from "./helpers.ts";

const MiB = 1024 * 1024;

/** Send all of `bytes` on a non-blocking socket fd, waiting while the kernel buffer is full. */
async function sendAll(fd: number, bytes: Uint8Array, fds: number[] = []): Promise<void> {
  let off = 0;
  let first = true;
  while (off < bytes.length) {
    const n = native.sendMsg(fd, bytes, off, bytes.length - off, first ? fds : []);
    if (n < 0) {
      await new Promise((r) => setTimeout(r, 1));
      continue;
    }
    if (n > 0) first = false;
    off += n;
  }
}

function version(msgId: number): Uint8Array {
  const json = formatCapabilities({ maxMsgFds: 8, maxDataXferSize: MiB });
  return encodeMessage(
    { msgId, command: Command.VERSION, flags: HeaderFlag.COMMAND },
    encodeVersion({ major: 0, minor: 0, json }),
  );
}

t.test("a client that never reads its replies is dropped once its queue passes the limit", async (t) => {
  const s = startServer();
  t.teardown(() => s.close());
  const fd = native.connectUnix(s.path());
  await sendAll(fd, version(0));
  // 64 KiB reads of the memory region: the replies pile up on the server side.
  const read = (id: number) =>
    encodeMessage(
      { msgId: id, command: Command.REGION_READ, flags: HeaderFlag.COMMAND },
      encodeRegionRead({ offset: 0n, region: 1, count: 0x10000 }),
    );
  const needed = Math.ceil(Limits.maxQueuedReplyBytes / 0x10000) + 64;
  let sent = 0;
  try {
    for (let i = 1; i <= needed; i++, sent++) await sendAll(fd, read(i));
  } catch (err) {
    // The server may drop us before we are done asking: EPIPE then.
    t.match((err as Error).message, /Broken pipe|reset/i, `dropped after ${sent} requests`);
  }
  await waitFor(() => /dropped for not reading its replies/.test(s.sink.text()), 10_000, "the drop");
  const line = s.sink.lines.find((l) => /dropped for not reading its replies/.test(l.line))!;
  t.equal(line.level, "warn", `logged as a warning: ${line.line}`);
  t.match(line.line, new RegExp(`limit ${Limits.maxQueuedReplyBytes}`), "the line names the limit");
  await waitFor(() => s.endpoints[0]!.session === null, 5000, "the teardown");
  native.close(fd);
  const next = await RawClient.connect(s.path());
  t.equal(await next.read32(0, 0), 0x56465531, "the next client is served");
  next.close();
});

t.test(
  "half a message and a stall: other devices go on, the busy device refuses, then serves again",
  async (t) => {
    const s = startServer([scratchpad, pl061]);
    t.teardown(() => s.close());
    const start = openFdCount();

    // The staller: negotiates, then sends 20 of a DMA_MAP's 48 bytes, with a memfd attached.
    const staller = native.connectUnix(s.path(0));
    await sendAll(staller, version(0));
    await waitFor(() => s.endpoints[0]!.session?.negotiated === true, 5000, "negotiation");
    const memfd = native.memfdCreate("half", 0x10000, true);
    const map = encodeMessage(
      { msgId: 1, command: Command.DMA_MAP, flags: HeaderFlag.COMMAND },
      encodeDmaMap({ argsz: 32, flags: 3, offset: 0n, addr: 0x100000n, size: 0x10000n }),
    );
    await sendAll(staller, map.subarray(0, 20), [memfd]);
    native.close(memfd);
    await new Promise((r) => setTimeout(r, 20));

    // The other device is unaffected.
    const other = await RawClient.connect(s.path(1));
    const info = await other.request(Command.DEVICE_GET_INFO, new Uint8Array([16, ...new Uint8Array(15)]));
    t.equal(errnoOf(info), 0, "the other endpoint answers");
    for (let i = 0; i < 50; i++) {
      t.equal(
        errnoOf(await other.request(Command.DEVICE_GET_INFO, new Uint8Array([16, ...new Uint8Array(15)]))),
        0,
      );
    }

    // A second client on the stalled device is told it is busy.
    const second = RawClient.connect(s.path(0));
    await t.rejects(second, /VERSION failed: 16/, `EBUSY (${Errno.EBUSY}) for the second client`);

    // The staller leaves; the device serves the next client, and the half message's fd is closed.
    native.close(staller);
    await waitFor(() => s.endpoints[0]!.session === null, 5000, "the staller's teardown");
    const later = await RawClient.connect(s.path(0));
    t.equal(await later.read32(0, 0), 0x56465531, "a later client is served");
    later.close();
    other.close();
    await waitFor(() => s.endpoints.every((e) => e.session === null), 5000, "every teardown");
    t.equal(openFdCount(), start, "no fd left behind (the half message's memfd included)");
  },
);
