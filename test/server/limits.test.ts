// Every refusing limit in src/server/limits.ts at its boundary: the limit itself is accepted,
// one over is refused with its errno.
import t from "tap";
import { native } from "../../native/index.ts";
import {
  Command,
  Device,
  defineDevice,
  encodeDmaMap,
  encodeRegionRead,
  encodeSetIrqs,
  encodeVersion,
  IrqSetFlag,
  Limits,
} from "../../src/index.ts";
import { memoryHarness, rawRequest, replyErrno, socketHarness } from "../helpers/harness.ts";

const wide = defineDevice({
  name: "wide",
  summary: "test: a large memory region and many vectors",
  bus: "platform",
  regions: [{ index: 0, name: "mem", size: 2 * 1024 * 1024, memory: true }],
  irqs: [{ index: 0, name: "vectors", count: 16, kind: "edge" }],
  create: () => ({}),
});

t.test("maxDataXferSize: a transfer of exactly the limit works, one byte more is EINVAL", async (t) => {
  const h = await memoryHarness({ factory: (dma, log) => new Device(wide, { dma, log }) });
  const data = new Uint8Array(Limits.maxDataXferSize).fill(3);
  await h.client.regionWrite(0, 0, data);
  t.equal((await h.client.regionRead(0, 0, Limits.maxDataXferSize)).length, Limits.maxDataXferSize);
  const over = encodeRegionRead({ offset: 0n, region: 0, count: Limits.maxDataXferSize + 1 });
  t.equal(replyErrno(await rawRequest(h.client, Command.REGION_READ, over)), 22);
  await h.close();
});

t.test("maxMsgFds over a real socket: exactly the limit is accepted, one more is EINVAL", async (t) => {
  const h = await socketHarness({ factory: (dma, log) => new Device(wide, { dma, log }) });
  const client = await h.connect();
  const send = (count: number) => {
    const fds = Array.from({ length: count }, () => native.eventfd(0));
    const body = encodeSetIrqs({
      argsz: 20,
      flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER,
      index: 0,
      start: 0,
      count,
      data: null,
    });
    return rawRequest(client, Command.DEVICE_SET_IRQS, body, { fds }).finally(() => {
      for (const fd of fds) native.close(fd);
    });
  };
  t.equal(replyErrno(await send(Limits.maxMsgFds)), 0);
  t.equal(h.endpoint.device.irqs.heldFds().length, Limits.maxMsgFds);
  t.equal(replyErrno(await send(Limits.maxMsgFds + 1)), 22);
  client.close();
  await h.close();
});

t.test("maxClientMsgFds: a client may claim exactly the limit, not more", async (t) => {
  for (const [n, errno] of [
    [Limits.maxClientMsgFds, 0],
    [Limits.maxClientMsgFds + 1, 22],
  ] as const) {
    const h = await memoryHarness({ client: { negotiate: false } });
    const body = encodeVersion({ major: 0, minor: 0, json: `{"capabilities":{"max_msg_fds":${n}}}` });
    t.equal(replyErrno(await rawRequest(h.client, Command.VERSION, body)), errno, `max_msg_fds ${n}`);
    await h.close();
  }
});

t.test(
  "maxDmaMaps: exactly the limit of maps is accepted, one more is ENOSPC; unmap-all clears them",
  async (t) => {
    const h = await memoryHarness();
    const map = (i: number) =>
      rawRequest(
        h.client,
        Command.DMA_MAP,
        encodeDmaMap({ argsz: 32, flags: 3, offset: 0n, addr: BigInt(i) * 0x1000n, size: 0x1000n }),
      );
    const batch: Promise<unknown>[] = [];
    for (let i = 0; i < Limits.maxDmaMaps; i++) {
      batch.push(map(i));
      if (batch.length === 512) await Promise.all(batch.splice(0));
    }
    await Promise.all(batch);
    t.equal(h.session.space.count, Limits.maxDmaMaps);
    t.equal(replyErrno(await map(Limits.maxDmaMaps)), 28);
    await h.client.dmaUnmap(0n, 0n, 2);
    t.equal(h.session.space.count, 0);
    t.equal(replyErrno(await map(0)), 0);
    await h.close();
  },
);
