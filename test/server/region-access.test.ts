// REGION_READ, REGION_WRITE and REGION_WRITE_MULTI: data both ways, posted writes, and refusals.
import t from "tap";
import { ID_VALUE, Reg } from "../../devices/scratchpad/index.ts";
import { Command, encodeRegionRead, encodeRegionWrite, Limits } from "../../src/index.ts";
import { memoryHarness, rawRequest, rejection, replyErrno, u32 } from "../helpers/harness.ts";

t.test("reads and writes reach the registers and the memory", async (t) => {
  const h = await memoryHarness();
  t.equal(await h.client.regionRead32(0, Reg.ID), ID_VALUE);
  await h.client.regionWrite32(0, Reg.SCRATCH, 0xdeadbeef);
  t.equal(await h.client.regionRead32(0, Reg.SCRATCH), 0xdeadbeef);
  const data = new Uint8Array(4096).map((_, i) => i & 0xff);
  await h.client.regionWrite(1, 0x1000, data);
  t.same(await h.client.regionRead(1, 0x1000, 4096), data, "a 4 KiB transfer to memory");
  t.same(await h.client.regionRead(1, 0, 0), new Uint8Array(0), "count 0 succeeds");
  await h.close();
});

t.test("posted writes are applied in order before a later read", async (t) => {
  const h = await memoryHarness();
  for (let i = 0; i < 100; i++) await h.client.regionWrite32(0, Reg.SCRATCH, i, { posted: true });
  t.equal(await h.client.regionRead32(0, Reg.SCRATCH), 99);
  t.equal(h.client.unexpected.length, 0);
  await h.close();
});

t.test("refused accesses carry EINVAL and the session goes on", async (t) => {
  const h = await memoryHarness();
  const read = (region: number, offset: bigint, count: number) =>
    rawRequest(h.client, Command.REGION_READ, encodeRegionRead({ offset, region, count }));
  t.equal(replyErrno(await read(0, 0x100n, 4)), 22, "past the end of the region");
  t.equal(replyErrno(await read(0, 0xfen, 4)), 22, "straddling the end");
  t.equal(replyErrno(await read(0, (1n << 64n) - 2n, 4)), 22, "offset near 2^64");
  t.equal(replyErrno(await read(0, 0n, 2)), 22, "a 2-byte access to a 4-byte register region");
  t.equal(replyErrno(await read(7, 0n, 4)), 22, "no such region");
  t.equal(replyErrno(await read(1, 0n, Limits.maxDataXferSize + 1)), 22, "count over max_data_xfer_size");
  const badWrite = encodeRegionWrite({ offset: 0n, region: 0, count: 8, data: new Uint8Array(8) }).subarray(
    0,
    20,
  );
  t.equal(
    replyErrno(await rawRequest(h.client, Command.REGION_WRITE, badWrite)),
    22,
    "data shorter than count",
  );
  const body = encodeRegionWrite({ offset: BigInt(Reg.SCRATCH), region: 0, count: 4, data: u32(5) });
  t.equal(replyErrno(await rawRequest(h.client, Command.REGION_WRITE, body)), 0);
  t.equal(await h.client.regionRead32(0, Reg.SCRATCH), 5);
  await h.close();
});

t.test("REGION_WRITE_MULTI applies entries in order; a bad entry stops the batch with EINVAL", async (t) => {
  const h = await memoryHarness();
  const entries = [1, 2, 3].map((v) => ({ offset: BigInt(Reg.SCRATCH), region: 0, count: 4, data: u32(v) }));
  t.equal(await h.client.writeMulti(entries), 3n);
  t.equal(await h.client.regionRead32(0, Reg.SCRATCH), 3, "the last entry wins: order kept");
  await h.client.writeMulti([{ offset: 8n, region: 1, count: 8, data: new Uint8Array(8).fill(7) }], {
    posted: true,
  });
  t.same([...(await h.client.regionRead(1, 8, 8))], [7, 7, 7, 7, 7, 7, 7, 7]);
  t.equal(
    await rejection(
      h.client.writeMulti([
        { offset: BigInt(Reg.SCRATCH), region: 0, count: 4, data: u32(10) },
        { offset: 0x400n, region: 0, count: 4, data: u32(11) },
        { offset: BigInt(Reg.SCRATCH), region: 0, count: 4, data: u32(12) },
      ]),
    ),
    22,
  );
  t.equal(await h.client.regionRead32(0, Reg.SCRATCH), 10, "entries before the bad one applied, none after");
  await h.close();
});

t.test("REGION_WRITE_MULTI is refused when it was not offered", async (t) => {
  const h = await memoryHarness({ server: { writeMultiple: false } });
  t.equal(h.client.serverCaps.writeMultiple, false);
  t.equal(await rejection(h.client.writeMulti([{ offset: 4n, region: 0, count: 4, data: u32(1) }])), 22);
  await h.close();
});
