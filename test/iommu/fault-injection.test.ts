// The fail-nth sweep: a scenario that maps (fd, message, peer), does DMA through copies, views and
// lists, and unmaps, is run again and again with the nth fault-injection hit failing, n = 1, 2, …
// until a run meets no failure. After every step the address space must be whole (its invariants
// hold, a failed map left no area, a failed unmap left the area live), and after every run no fd
// may be left open. Also: disarmed points cost nothing and change nothing.
import t from "tap";
import { native } from "../../native/index.ts";
import {
  type AddressSpace,
  Device,
  DeviceDma,
  DmaFault,
  defineDevice,
  FAULT_POINTS,
  faultInjection,
  InjectedFault,
  PeerRegistry,
  type PeerTarget,
  silentLogger,
} from "../../src/index.ts";
import { openFdCount } from "../../src/util/fds.ts";
import { bytes, RW, SparseMemory, space } from "./helpers.ts";

const peerDef = defineDevice({
  name: "fi-peer",
  summary: "peer for the sweep",
  bus: "platform",
  regions: [
    { index: 0, name: "mmap", size: 0x2000, memory: true, mmap: true },
    { index: 1, name: "memory", size: 0x1000, memory: true },
  ],
  irqs: [],
  create: () => ({}),
});

interface Ctx {
  s: AddressSpace;
  dma: DeviceDma;
  memfd: number;
  peers: PeerTarget[];
}

type Step =
  | { map: bigint; run(c: Ctx): unknown }
  | { unmap: bigint; run(c: Ctx): Promise<unknown> }
  | { run(c: Ctx): unknown };

const steps: Step[] = [
  {
    map: 0x10000n,
    run: (c) => c.s.map({ iova: 0x10000n, size: 0x2000n, flags: RW, fd: native.dup(c.memfd), offset: 0n }),
  },
  { map: 0x20000n, run: (c) => c.s.map({ iova: 0x20000n, size: 0x1000n, flags: RW, fd: -1, offset: 0n }) },
  { map: 0x30000n, run: (c) => c.s.mapPeer(0x30000n, c.peers[0]!) },
  { map: 0x40000n, run: (c) => c.s.mapPeer(0x40000n, c.peers[1]!) },
  { run: (c) => c.dma.read(0x10000n, 0x2000) },
  { run: (c) => c.dma.write(0x20000n, bytes(1, 2, 3)) },
  {
    run: (c) => {
      const v = c.dma.view(0x30000n, 16, "write");
      v.bytes[0] = 1;
      v.release();
    },
  },
  { run: (c) => c.dma.sg(0x10000n, 0x2000, "rw").release() },
  { run: (c) => c.dma.view(0x11000n, 8) }, // left held: the unmap below must detach it
  { unmap: 0x10000n, run: (c) => c.s.unmap(0x10000n, 0x2000n) },
  {
    map: 0x10000n,
    run: (c) =>
      c.s.map({ iova: 0x10000n, size: 0x1000n, flags: RW, fd: native.dup(c.memfd), offset: 0x1000n }),
  },
  { run: (c) => c.dma.write(0x10000n, bytes(9)) },
  { unmap: 0x30000n, run: (c) => c.s.unmap(0x30000n, 0x2000n) },
  { run: (c) => c.s.unmapAll() },
];

async function scenario(c: Ctx, n: number): Promise<void> {
  for (const [i, step] of steps.entries()) {
    const before = "map" in step ? c.s.find(step.map) : "unmap" in step ? c.s.find(step.unmap) : null;
    let failed: unknown = null;
    try {
      await step.run(c);
    } catch (err) {
      failed = err;
    }
    c.s.verify();
    if (failed !== null && !(failed instanceof InjectedFault) && !(failed instanceof DmaFault)) {
      // A refusal caused by an earlier injected failure (EEXIST, ENOENT) is fine; anything else is not.
      if (typeof (failed as { errno?: unknown }).errno !== "number") throw failed;
    }
    if ("map" in step) {
      const now = c.s.find(step.map);
      if (failed !== null && now !== before)
        throw new Error(`n=${n} step ${i}: a failed map changed the space`);
      if (failed === null && (!now || now.iova !== step.map))
        throw new Error(`n=${n} step ${i}: map succeeded, no area`);
    }
    if ("unmap" in step && before) {
      const now = c.s.find(step.unmap);
      if (failed !== null && (now !== before || !before.live)) {
        throw new Error(`n=${n} step ${i}: a failed unmap did not leave the area as it was`);
      }
      if (failed === null && (now !== null || before.state !== "released")) {
        throw new Error(`n=${n} step ${i}: an unmap left the area ${before.state}`);
      }
    }
  }
}

t.test("every named point is reached by the scenario", async (t) => {
  const registry = new PeerRegistry();
  const peer = new Device(peerDef, { dma: new DeviceDma(silentLogger), log: silentLogger });
  const reg = registry.register("p", peer);
  const memfd = native.memfdCreate("fi", 0x2000, true);
  const s = space();
  s.messages = new SparseMemory();
  const dma = new DeviceDma(silentLogger);
  dma.attach(s);
  faultInjection.count();
  try {
    await scenario({ s, dma, memfd, peers: [registry.resolve("p", 0), registry.resolve("p", 1)] }, 0);
  } finally {
    faultInjection.disarm();
  }
  t.same([...faultInjection.hits().keys()].sort(), [...FAULT_POINTS].sort());
  t.equal(dma.faults, 0, "nothing failed while counting");
  reg.unregister();
  peer.dispose();
  native.close(memfd);
});

t.test("fail-nth sweep: no failure leaves a half-built space or a leaked fd", async (t) => {
  const registry = new PeerRegistry();
  const peer = new Device(peerDef, { dma: new DeviceDma(silentLogger), log: silentLogger });
  const reg = registry.register("p", peer);
  const peers = [registry.resolve("p", 0), registry.resolve("p", 1)];
  const memfd = native.memfdCreate("fi", 0x2000, true);
  const baseline = openFdCount();
  const firedAt = new Map<string, number>();
  let n = 1;
  for (; n < 1000; n++) {
    const s = space();
    s.messages = new SparseMemory();
    const dma = new DeviceDma(silentLogger);
    dma.attach(s);
    faultInjection.failNth(n);
    try {
      await scenario({ s, dma, memfd, peers }, n);
    } finally {
      faultInjection.disarm();
    }
    const fired = faultInjection.fired;
    await s.unmapAll();
    s.verify();
    if (dma.liveHandles !== 0) throw new Error(`n=${n}: ${dma.liveHandles} views outlived the space`);
    const fds = openFdCount();
    if (fds !== baseline) throw new Error(`n=${n} (${fired}): ${fds - baseline} fds leaked`);
    if (fired === null) break;
    firedAt.set(fired, (firedAt.get(fired) ?? 0) + 1);
  }
  t.ok(n > 20 && n < 1000, `the sweep ended after ${n - 1} injected failures`);
  t.same([...firedAt.keys()].sort(), [...FAULT_POINTS].sort(), "every point failed at least once");
  t.equal(openFdCount(), baseline);
  reg.unregister();
  peer.dispose();
  native.close(memfd);
});

t.test("a failing munmap still closes the fd; a failing release step still releases", async (t) => {
  const baseline = openFdCount();
  const memfd = native.memfdCreate("fi", 0x1000, true);
  for (const point of ["unmap.munmap", "unmap.before-release"] as const) {
    const s = space();
    s.map({ iova: 0x1000n, size: 0x1000n, flags: RW, fd: native.dup(memfd), offset: 0n });
    await s.read(0x1000n, 4);
    faultInjection.failNth(1, point);
    try {
      await s.unmap(0x1000n, 0x1000n);
    } finally {
      faultInjection.disarm();
    }
    t.equal(faultInjection.fired, point);
    t.equal(s.count, 0, `${point}: the unmap succeeded`);
  }
  native.close(memfd);
  t.equal(openFdCount(), baseline);
});

t.test("disarmed, the points change nothing", async (t) => {
  t.notOk(faultInjection.armed);
  t.throws(() => faultInjection.failNth(0), RangeError);
  const s = space();
  s.map({ iova: 0x1000n, size: 0x1000n, flags: RW, fd: -1, offset: 0n });
  t.equal(s.count, 1);
  t.notOk(faultInjection.armed);
});
