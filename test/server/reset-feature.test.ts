// DEVICE_RESET, DEVICE_FEATURE, MIG_DATA_READ and MIG_DATA_WRITE.
import t from "tap";
import { Reg } from "../../devices/scratchpad/index.ts";
import { Command, Feature, FeatureFlag } from "../../src/index.ts";
import { memoryHarness, rawRequest, rejection, replyErrno } from "../helpers/harness.ts";

t.test(
  "DEVICE_RESET returns the device to its power-on state and keeps maps and interrupt fds",
  async (t) => {
    const h = await memoryHarness();
    await h.client.regionWrite32(0, Reg.SCRATCH, 42);
    await h.client.mapMemory(0x1000n, 0x1000);
    await h.client.enableInterrupts(0, 0, 1);
    await h.client.reset();
    t.equal(await h.client.regionRead32(0, Reg.SCRATCH), 0);
    t.equal(h.session.space.count, 1, "DMA maps survive a device reset");
    t.equal(h.session.device.irqs.heldFds().length, 1, "interrupt fds survive too");
    t.equal(
      replyErrno(await rawRequest(h.client, Command.DEVICE_RESET, new Uint8Array(4))),
      22,
      "a reset with a payload",
    );
    await h.close();
  },
);

t.test("DEVICE_FEATURE: unsupported features are ENOTTY, malformed ones EINVAL", async (t) => {
  const h = await memoryHarness();
  t.equal(
    await rejection(h.client.deviceFeature(Feature.MIGRATION | FeatureFlag.GET, new Uint8Array(8), 16)),
    25,
  );
  t.equal(
    await rejection(h.client.deviceFeature(Feature.MIGRATION | FeatureFlag.PROBE | FeatureFlag.GET)),
    25,
  );
  t.equal(
    replyErrno(await rawRequest(h.client, Command.DEVICE_FEATURE, new Uint8Array(4))),
    22,
    "short body",
  );
  await h.close();
});

t.test("MIG_DATA_READ and MIG_DATA_WRITE are refused outside a migration state", async (t) => {
  const h = await memoryHarness();
  t.equal(await rejection(h.client.migDataRead(64)), 22);
  t.equal(await rejection(h.client.migDataWrite(new Uint8Array(16))), 22);
  t.equal(replyErrno(await rawRequest(h.client, Command.MIG_DATA_READ, new Uint8Array(2))), 22, "short body");
  await h.close();
});
