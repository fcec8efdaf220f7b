// Hostile sizes through a real socket: transfer counts over max_data_xfer_size, a message over
// the message size limit, a client that takes small transfers, and the DMA map table filled to
// its 65,535 entries.

import t from "tap";
import { Errno } from "../../protocol/index.ts";
import {
  Command,
  encodeDmaMap,
  encodeDmaUnmap,
  encodeMigDataRead,
  encodeRegionRead,
  HEADER_SIZE,
  Limits,
} from "../../src/index.ts";
import { dmaStatus, errnoOf, RawClient, startDma, startServer } from "./helpers.ts";

t.test("counts over max_data_xfer_size are EINVAL and the session goes on", async (t) => {
  const s = startServer();
  t.teardown(() => s.close());
  const c = await RawClient.connect(s.path());
  const over = Limits.maxDataXferSize + 1;
  const read = await c.request(Command.REGION_READ, encodeRegionRead({ offset: 0n, region: 1, count: over }));
  t.equal(errnoOf(read), Errno.EINVAL, "REGION_READ of max+1 bytes");
  const huge = await c.request(
    Command.REGION_READ,
    encodeRegionRead({ offset: 0n, region: 1, count: 0xffffffff }),
  );
  t.equal(errnoOf(huge), Errno.EINVAL, "REGION_READ of 4 GiB - 1");
  // A write of max+1 bytes still fits one message (16 + 16 + max+1 ≤ the message limit).
  const body = new Uint8Array(16 + over);
  const v = new DataView(body.buffer);
  v.setUint32(8, 1, true);
  v.setUint32(12, over, true);
  t.ok(HEADER_SIZE + body.length <= Limits.maxMessageSize);
  t.equal(errnoOf(await c.request(Command.REGION_WRITE, body)), Errno.EINVAL, "REGION_WRITE of max+1 bytes");
  const mig = await c.request(Command.MIG_DATA_READ, encodeMigDataRead({ argsz: 8 + over, size: over }));
  t.not(errnoOf(mig), 0, "MIG_DATA_READ over the limit is refused");
  t.equal(await c.read32(0, 0), 0x56465531, "the session goes on");
  c.close();
});

t.test("a message over the size limit breaks the stream: E2BIG for its msg_id, then the close", async (t) => {
  const s = startServer();
  t.teardown(() => s.close());
  const c = await RawClient.connect(s.path());
  // The header alone condemns it: the server answers and closes without waiting for a body it
  // will never read (a client still pushing the body would see its send fail instead).
  const reply = await c.requestHeader(Command.REGION_WRITE, Limits.maxMessageSize + 1);
  t.equal(errnoOf(reply), Errno.E2BIG);
  await new Promise<void>((resolve) => {
    const poll = () => (c.closed ? resolve() : setTimeout(poll, 2));
    poll();
  });
  t.ok(c.closed, "the server closed the connection");
  t.match(s.sink.text(), /broken stream/);
  const next = await RawClient.connect(s.path());
  t.equal(await next.read32(0, 0), 0x56465531, "the endpoint serves the next client");
  next.close();
});

t.test("server DMA to message-backed memory respects the client's max_data_xfer_size", async (t) => {
  const s = startServer();
  t.teardown(() => s.close());
  const c = await RawClient.connect(s.path(), { maxDataXferSize: 4096 });
  const iova = 0x200000n;
  const map = encodeDmaMap({ argsz: 32, flags: 3, offset: 0n, addr: iova, size: 0x10000n });
  t.equal(errnoOf(await c.request(Command.DMA_MAP, map)), 0);
  const raised = await startDma(c, iova, 0x10000, 1);
  const seen: number[] = [];
  // Serve each DMA_READ as it comes until the device is done.
  const serve = setInterval(() => {
    for (const req of c.requests.splice(0)) {
      seen.push(Number(new DataView(req.body.buffer, req.body.byteOffset).getBigUint64(8, true)));
      c.answer(req);
    }
  }, 1);
  const status = await dmaStatus(c, raised);
  clearInterval(serve);
  t.equal(status, 2, "the DMA completed");
  t.equal(seen.length, 16, "64 KiB came as 16 requests");
  t.ok(
    seen.every((n) => n <= 4096),
    "none over 4096 bytes",
  );
  c.close();
});

t.test("65,535 DMA maps, one more is ENOSPC, unmap-all empties the table", async (t) => {
  const s = startServer();
  t.teardown(() => s.close());
  const c = await RawClient.connect(s.path());
  const n = Limits.maxDmaMaps;
  t.equal(n, 65535);
  const replies: Promise<number>[] = [];
  for (let i = 0; i < n; i++) {
    const body = encodeDmaMap({ argsz: 32, flags: 3, offset: 0n, addr: BigInt(i) * 0x1000n, size: 0x1000n });
    replies.push(c.request(Command.DMA_MAP, body).then(errnoOf));
    // Let the replies drain now and then, so neither side queues megabytes.
    if (i % 4096 === 4095) await replies[i];
  }
  const errnos = await Promise.all(replies);
  t.equal(errnos.filter((e) => e !== 0).length, 0, "all 65,535 maps succeeded");
  t.equal(s.endpoints[0]!.session!.space.count, n);
  const one = encodeDmaMap({ argsz: 32, flags: 3, offset: 0n, addr: BigInt(n) * 0x1000n, size: 0x1000n });
  t.equal(errnoOf(await c.request(Command.DMA_MAP, one)), Errno.ENOSPC, "map 65,536 is ENOSPC");
  const all = encodeDmaUnmap({ argsz: 24, flags: 0x2, addr: 0n, size: 0n });
  t.equal(errnoOf(await c.request(Command.DMA_UNMAP, all)), 0, "unmap-all");
  t.equal(s.endpoints[0]!.session!.space.count, 0);
  t.equal(errnoOf(await c.request(Command.DMA_MAP, one)), 0, "and a map works again");
  c.close();
});
