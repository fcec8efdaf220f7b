// ctx.defer: deferred calls run on the device's clock unless the device is reset first. Every
// reset kind cancels them: DEVICE_RESET and a client's disconnect (the Device), a Function Level
// Reset and the D3hot -> D0 soft reset (the PCI function, which the Device does not see), and
// dispose. A call deferred after the reset runs; `done` settles for a call that ran and for one
// that was cancelled; a call that throws is logged.
import t from "tap";
import { DeferredTimers } from "../../src/device/deferred.ts";
import {
  type BehaviourOf,
  createMemoryPair,
  type Deferred,
  Device,
  DeviceDma,
  defineDevice,
  definePciDevice,
  ExpressCap,
  ExpressDevCtl,
  leValue,
  MemorySink,
  PciDevice,
  PciRegion,
  PmCap,
  SinkLogger,
  serveConnection,
  VfioUserClient,
} from "../../src/index.ts";
import { ManualClock } from "../helpers/manual-clock.ts";

const Reg = { ARM: 0x0, FIRED: 0x4, THROW: 0x8 } as const;

/** BAR0: a write to ARM defers "count one more" by the value written, in milliseconds. */
const timerPci = definePciDevice({
  name: "timer-pci",
  summary: "test: deferred calls",
  ids: { vendor: 0x1234, device: 0x7e57, classCode: 0xff0000 },
  bars: [{ index: 0, kind: "memory", size: 0x1000, accessSizes: [4] }],
  capabilities: { pm: { noSoftReset: false }, express: { flr: true } },
  create(ctx) {
    let fired = 0;
    let resets = 0;
    const armed: Deferred[] = [];
    return {
      get fired() {
        return fired;
      },
      get resets() {
        return resets;
      },
      armed,
      bars: {
        0: {
          read: (offset) => (offset === Reg.FIRED ? fired : 0),
          write(offset, data) {
            if (offset === Reg.ARM) armed.push(ctx.defer(leValue(data), () => void fired++));
            if (offset === Reg.THROW)
              armed.push(
                ctx.defer(0, () => {
                  throw new Error("the deferred call broke");
                }),
              );
          },
        },
      },
      reset() {
        resets++;
      },
    };
  },
});

/** The same on a bus-agnostic device: the Device's own reset path. */
const timerPlain = defineDevice({
  name: "timer-plain",
  summary: "test: deferred calls",
  bus: "platform",
  regions: [{ index: 0, name: "regs", size: 0x100, accessSizes: [4] }],
  irqs: [],
  create(ctx) {
    let fired = 0;
    return {
      get fired() {
        return fired;
      },
      regions: {
        0: {
          read: () => fired,
          write: (_offset, data) => void ctx.defer(leValue(data), async () => void fired++),
        },
      },
    };
  },
});

async function servePci() {
  const clock = new ManualClock();
  const logs = new MemorySink();
  const log = new SinkLogger(logs, "debug");
  const [a, b] = createMemoryPair();
  let device: PciDevice<BehaviourOf<typeof timerPci>> | undefined;
  const session = serveConnection(
    b,
    (dma, l) => {
      device = new PciDevice(timerPci, { dma, log: l, clock });
      return device;
    },
    { log },
  );
  const client = await VfioUserClient.over(a);
  const dev = device!;
  const cfg16 = async (offset: number) => leValue(await client.regionRead(PciRegion.CONFIG, offset, 2));
  const cfgWrite16 = (offset: number, v: number) =>
    client.regionWrite(PciRegion.CONFIG, offset, new Uint8Array([v & 0xff, v >> 8]));
  return {
    client,
    session,
    clock,
    logs,
    device: dev,
    arm: (ms: number) => client.regionWrite32(0, Reg.ARM, ms),
    cfg16,
    cfgWrite16,
    async close() {
      client.close();
      await session.ended;
      dev.dispose();
    },
  };
}

t.test("a deferred call runs on the device's clock, once", async (t) => {
  const h = await servePci();
  t.teardown(() => h.close());
  await h.arm(5);
  t.equal(h.clock.queued, 1, "scheduled on the clock the device was given");
  t.equal(h.device.behaviour.fired, 0, "not before its time");
  h.clock.run();
  t.equal(h.device.behaviour.fired, 1, "ran");
  await h.device.behaviour.armed[0]!.done;
  h.clock.run();
  t.equal(h.device.behaviour.fired, 1, "once");
});

t.test("DEVICE_RESET cancels what was deferred; a call deferred after it runs", async (t) => {
  const h = await servePci();
  t.teardown(() => h.close());
  await h.arm(5);
  await h.arm(50);
  await h.client.reset();
  t.equal(h.device.behaviour.resets, 1, "the model was reset");
  t.equal(h.clock.queued, 0, "both timers cancelled");
  await Promise.all(h.device.behaviour.armed.map((d) => d.done));
  t.pass("done settles for cancelled calls");
  h.clock.run();
  t.equal(h.device.behaviour.fired, 0, "nothing ran after the reset");
  await h.arm(5);
  h.clock.run();
  t.equal(h.device.behaviour.fired, 1, "deferred after the reset: runs");
});

t.test("a Function Level Reset cancels what was deferred", async (t) => {
  const h = await servePci();
  t.teardown(() => h.close());
  const devctl = h.device.pci.express!.offset + ExpressCap.DEVCTL;
  await h.arm(5);
  await h.cfgWrite16(devctl, (await h.cfg16(devctl)) | ExpressDevCtl.BCR_FLR);
  t.equal(h.device.pci.resets.flr, 1, "an FLR happened");
  t.equal(h.clock.queued, 0, "cancelled");
  h.clock.run();
  t.equal(h.device.behaviour.fired, 0);
});

t.test("leaving D3hot (a soft reset) cancels what was deferred; entering it does not", async (t) => {
  const h = await servePci();
  t.teardown(() => h.close());
  const pmcsr = h.device.pci.pm!.offset + PmCap.PMCSR;
  await h.arm(5);
  await h.cfgWrite16(pmcsr, 3);
  t.equal(h.clock.queued, 1, "D3hot alone resets nothing");
  await h.cfgWrite16(pmcsr, 0);
  t.equal(h.device.pci.resets.power, 1, "D3hot -> D0 reset the function");
  t.equal(h.clock.queued, 0, "cancelled");
  h.clock.run();
  t.equal(h.device.behaviour.fired, 0);
});

t.test("a client's disconnect cancels what was deferred", async (t) => {
  const h = await servePci();
  await h.arm(5);
  h.client.close();
  await h.session.ended;
  t.equal(h.clock.queued, 0, "cancelled by the disconnect's reset");
  h.clock.run();
  t.equal(h.device.behaviour.fired, 0);
  h.device.dispose();
});

t.test("dispose cancels what was deferred", async (t) => {
  const clock = new ManualClock();
  const log = new SinkLogger(new MemorySink());
  const d = new PciDevice(timerPci, { dma: new DeviceDma(log), log, clock });
  d.write(0, BigInt(Reg.ARM), new Uint8Array([5, 0, 0, 0]));
  t.equal(clock.queued, 1);
  d.dispose();
  t.equal(clock.queued, 0, "cancelled");
});

t.test("a deferred call that throws is logged; the device goes on", async (t) => {
  const h = await servePci();
  t.teardown(() => h.close());
  await h.client.regionWrite32(0, Reg.THROW, 0);
  h.clock.run();
  await h.device.behaviour.armed[0]!.done;
  t.ok(
    h.logs.lines.some(
      (l) => l.level === "error" && /deferred work failed: the deferred call broke/.test(l.line),
    ),
    "logged",
  );
  await h.arm(0);
  h.clock.run();
  t.equal(await h.client.regionRead32(0, Reg.FIRED), 1, "later calls still run");
});

t.test("a bus-agnostic device: DEVICE_RESET cancels, an async call's done waits for it", async (t) => {
  const clock = new ManualClock();
  const [a, b] = createMemoryPair();
  let device: Device<{ readonly fired: number }> | undefined;
  const session = serveConnection(b, (dma, log) => {
    device = new Device(timerPlain, { dma, log, clock });
    return device;
  });
  const client = await VfioUserClient.over(a);
  t.teardown(async () => {
    client.close();
    await session.ended;
    device!.dispose();
  });
  await client.regionWrite32(0, 0, 5);
  await client.reset();
  t.equal(clock.queued, 0, "cancelled by DEVICE_RESET");
  await client.regionWrite32(0, 0, 5);
  clock.run();
  t.equal(device!.behaviour.fired, 1, "the call after the reset ran");
});

t.test("DeferredTimers: done waits for an async call, a bad delay is refused", async (t) => {
  const clock = new ManualClock();
  const timers = new DeferredTimers(clock, new SinkLogger(new MemorySink()));
  let finish!: () => void;
  let settled = false;
  const d = timers.defer(1, () => new Promise<void>((resolve) => (finish = resolve)));
  void d.done.then(() => (settled = true));
  t.equal(timers.pending, 1);
  clock.run();
  t.equal(timers.pending, 0, "fired");
  await new Promise((r) => setImmediate(r));
  t.notOk(settled, "done waits for the call's promise");
  finish();
  await d.done;
  t.ok(settled);
  d.cancel();
  t.pass("cancelling a call that ran is harmless");
  for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY])
    t.throws(() => timers.defer(bad, () => {}), RangeError, String(bad));
});
