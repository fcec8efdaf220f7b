// DEVICE_GET_INFO, DEVICE_GET_REGION_INFO (with caps and the argsz retry), DEVICE_GET_REGION_IO_FDS.
import t from "tap";
import { native } from "../../native/index.ts";
import {
  Command,
  DeviceFlag,
  decodeRegionInfoReply,
  encodeDeviceInfo,
  encodeRegionInfo,
  encodeRegionIoFds,
  RegionCapId,
  RegionFlag,
} from "../../src/index.ts";
import { memoryHarness, rawRequest, replyErrno, socketHarness } from "../helpers/harness.ts";

t.test("DEVICE_GET_INFO reports the bus, reset, regions and interrupts", async (t) => {
  const h = await memoryHarness();
  const info = await h.client.getDeviceInfo();
  t.equal(info.argsz, 16);
  t.equal(info.flags, DeviceFlag.PLATFORM | DeviceFlag.RESET);
  t.equal(info.numRegions, 2);
  t.equal(info.numIrqs, 2);
  const small = await rawRequest(
    h.client,
    Command.DEVICE_GET_INFO,
    encodeDeviceInfo({ argsz: 15, flags: 0, numRegions: 0, numIrqs: 0 }),
  );
  t.equal(replyErrno(small), 22, "argsz too small for the fixed reply");
  t.equal(
    replyErrno(await rawRequest(h.client, Command.DEVICE_GET_INFO, new Uint8Array(8))),
    22,
    "short body",
  );
  await h.close();
});

t.test("DEVICE_GET_REGION_INFO: the argsz retry protocol and the sparse-mmap cap", async (t) => {
  const h = await memoryHarness();
  const ask = (index: number, argsz: number) =>
    rawRequest(
      h.client,
      Command.DEVICE_GET_REGION_INFO,
      encodeRegionInfo({ argsz, flags: 0, index, capOffset: 0, size: 0n, offset: 0n }),
    );
  const first = await ask(1, 32);
  t.equal(replyErrno(first), 0);
  const r1 = decodeRegionInfoReply(first.body);
  // SPARSE_MMAP (16 + 16 for one area), then the project's cache capability (16 + 32 for one
  // view: scratchpad's memory is WB).
  t.equal(r1.argsz, 32 + 32 + 48, "argsz says how much the full reply needs");
  t.equal(r1.caps.length, 0, "caps left out when they do not fit");
  t.equal(r1.flags & RegionFlag.CAPS, 0);
  t.equal(first.fds.length, 0, "no fd without the caps that describe it");
  const second = await ask(1, r1.argsz);
  const r2 = decodeRegionInfoReply(second.body);
  t.equal(r2.flags, RegionFlag.READ | RegionFlag.WRITE | RegionFlag.MMAP | RegionFlag.CAPS);
  t.equal(r2.capOffset, 32);
  t.same(r2.caps[0], { id: RegionCapId.SPARSE_MMAP, version: 1, areas: [{ offset: 0n, size: 0x10000n }] });
  t.equal(second.fds.length, 1);
  for (const fd of second.fds) native.close(fd);
  const regs = decodeRegionInfoReply((await ask(0, 32)).body);
  t.equal(regs.flags, RegionFlag.READ | RegionFlag.WRITE);
  t.equal(regs.size, 0x100n);
  t.equal(replyErrno(await ask(2, 32)), 22, "index past the last region");
  t.equal(replyErrno(await ask(0, 31)), 22, "argsz below 32");
  await h.close();
});

t.test(
  "a region fd from GET_REGION_INFO, mmapped by the client over a real socket, is shared with the device",
  async (t) => {
    const h = await socketHarness();
    const client = await h.connect();
    const view = await client.mmapRegion(1);
    const devMem = h.endpoint.device.region(1)!.memory!;
    view[10] = 0x5a;
    t.equal(devMem[10], 0x5a, "client store seen by the device");
    devMem[20] = 0xa5;
    t.equal(view[20], 0xa5, "device store seen by the client");
    const bytes = await client.regionRead(1, 10, 1);
    t.equal(bytes[0], 0x5a, "and through REGION_READ");
    native.unmap(view.buffer as ArrayBuffer);
    client.close();
    await h.close();
  },
);

t.test("DEVICE_GET_REGION_IO_FDS: an empty list, and its refusals", async (t) => {
  const h = await memoryHarness();
  const r = await h.client.getRegionIoFds(0);
  t.same(r.entries, []);
  t.same(r.fds, []);
  const ask = (argsz: number, flags: number, index: number, count: number) =>
    rawRequest(h.client, Command.DEVICE_GET_REGION_IO_FDS, encodeRegionIoFds({ argsz, flags, index, count }));
  t.equal(replyErrno(await ask(16, 1, 0, 0)), 22, "flags must be 0");
  t.equal(replyErrno(await ask(16, 0, 0, 1)), 22, "count must be 0");
  t.equal(replyErrno(await ask(16, 0, 9, 0)), 22, "no such region");
  t.equal(replyErrno(await ask(8, 0, 0, 0)), 22, "argsz below the head");
  await h.close();
});
