// Model-based test: random sequences of map (fd, message and peer backings), unmap (exact, partial,
// random), unmapAll, and device read / write / view / sg agree with a naive model that keeps one
// entry per area and resolves every byte by linear search. Addresses cluster near 0, 2^32, 2^63
// and the very top of the 64-bit space, where iova+size wraps or ends exactly at 2^64-1; fd areas
// are small memfds, message areas a sparse in-process memory, peers a test device's regions.
import fc from "fast-check";
import t from "tap";
import { native } from "../../native/index.ts";
import {
  type AddressSpace,
  Device,
  DeviceDma,
  DmaFault,
  defineDevice,
  PeerRegistry,
  type PeerTarget,
  silentLogger,
} from "../../src/index.ts";
import { openFdCount } from "../../src/util/fds.ts";
import { SparseMemory, space, U64_MAX } from "./helpers.ts";

const PAGE = 4096n;
const PEER_SIZE = 0x4000;
const MAX_MAPS = 6;
const BASES = [0n, 1n << 32n, 1n << 63n, (1n << 64n) - 16n * PAGE];

type Kind = "msg" | "fd" | "peer0" | "peer1" | "peer2";

type Op =
  | {
      op: "map";
      base: number;
      page: number;
      pages: number;
      flags: number;
      kind: Kind;
      peerOff: number;
      extra: number;
    }
  | { op: "unmap"; pick: number; how: "exact" | "half" | "random"; base: number; page: number }
  | { op: "unmapAll" }
  | {
      op: "read" | "write" | "view" | "sg";
      base: number;
      at: number;
      length: number;
      seed: number;
      /** null: at `base`+`at`; else near the start of the (near % count)th area, at+`at`-256 */
      near: number | null;
    };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("map" as const),
      base: fc.nat(BASES.length - 1),
      page: fc.nat(17),
      pages: fc.oneof(
        { weight: 1, arbitrary: fc.constant(0) },
        { weight: 6, arbitrary: fc.integer({ min: 1, max: 4 }) },
      ),
      flags: fc.constantFrom(1, 3, 3, 3, 3, 3, 0, 2),
      kind: fc.constantFrom<Kind>("msg", "msg", "fd", "peer0", "peer1", "peer2"),
      peerOff: fc.nat(PEER_SIZE / 512 - 1),
      extra: fc.nat(4095),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("unmap" as const),
      pick: fc.nat(),
      how: fc.constantFrom("exact", "exact", "half", "random"),
      base: fc.nat(BASES.length - 1),
      page: fc.nat(17),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ op: "unmapAll" as const }) },
  {
    weight: 8,
    arbitrary: fc.record({
      op: fc.constantFrom("read" as const, "write" as const, "view" as const, "sg" as const),
      base: fc.nat(BASES.length - 1),
      at: fc.nat(20 * 4096),
      length: fc.oneof(fc.integer({ min: 0, max: 16 }), fc.integer({ min: 0, max: 9000 })),
      seed: fc.nat(255),
      near: fc.option(fc.nat(), { freq: 5 }),
    }),
  },
);

/** Where the model keeps an area's bytes. */
interface Store {
  get(i: bigint): number;
  set(i: bigint, v: number): void;
}

interface ModelArea {
  iova: bigint;
  last: bigint;
  flags: number;
  kind: Kind;
  store: Store;
}

type Outcome = { ok: true; data?: Uint8Array } | { ok: false; fault: string };

class Model {
  areas: ModelArea[] = [];

  find(a: bigint): ModelArea | undefined {
    return this.areas.find((x) => x.iova <= a && a <= x.last);
  }

  /** The first fault of an access, in address order, as the real walk finds it. */
  check(iova: bigint, length: number, write: boolean): string | null {
    if (iova > U64_MAX || (length > 0 && iova + BigInt(length) - 1n > U64_MAX)) return "out-of-range";
    let a = iova;
    const end = iova + BigInt(length);
    while (a < end) {
      const x = this.find(a);
      if (!x) return "unmapped";
      if (write ? (x.flags & 2) === 0 : (x.flags & 1) === 0) return "permission";
      a = x.last + 1n;
    }
    return null;
  }

  read(iova: bigint, length: number): Outcome {
    const fault = this.check(iova, length, false);
    if (fault) return { ok: false, fault };
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      const a = iova + BigInt(i);
      const x = this.find(a)!;
      out[i] = x.store.get(a - x.iova);
    }
    return { ok: true, data: out };
  }

  write(iova: bigint, data: Uint8Array): Outcome {
    const fault = this.check(iova, data.length, true);
    if (fault) return { ok: false, fault };
    for (let i = 0; i < data.length; i++) {
      const a = iova + BigInt(i);
      const x = this.find(a)!;
      x.store.set(a - x.iova, data[i]!);
    }
    return { ok: true };
  }
}

const peerDef = defineDevice({
  name: "model-peer",
  summary: "peer regions for the model test",
  bus: "platform",
  regions: [
    { index: 0, name: "mmap", size: PEER_SIZE, memory: true, mmap: true, cache: "WB" },
    { index: 1, name: "memory", size: PEER_SIZE, memory: true, cache: "WC" },
    { index: 2, name: "trapped", size: PEER_SIZE, cache: "UC" },
  ],
  irqs: [],
  create() {
    const regs = new Uint8Array(PEER_SIZE);
    return {
      regions: {
        2: {
          read: (offset, size) => regs.slice(offset, offset + size),
          write: (offset, data) => regs.set(data, offset),
        },
      },
      reset: () => {
        regs.fill(0);
      },
    };
  },
});

function regionStore(bytes: Uint8Array, offset: number): Store {
  return { get: (i) => bytes[offset + Number(i)]!, set: (i, v) => (bytes[offset + Number(i)] = v) };
}

export const stats: Record<string, number> = {};
const bump = (k: string) => {
  stats[k] = (stats[k] ?? 0) + 1;
};

async function run(ops: Op[]): Promise<void> {
  const s: AddressSpace = space({ maxDmaMaps: MAX_MAPS });
  const port = new SparseMemory();
  s.messages = port;
  const dma = new DeviceDma(silentLogger);
  dma.attach(s);
  const registry = new PeerRegistry();
  const peerDev = new Device(peerDef, { dma: new DeviceDma(silentLogger), log: silentLogger });
  const reg = registry.register("peer", peerDev);
  // The model's view of the trapped region: read it through the device itself.
  const trapped: Store & { bytes: Uint8Array } = {
    bytes: new Uint8Array(PEER_SIZE),
    get: () => 0,
    set: () => {},
  };
  const targets: Record<string, PeerTarget> = {
    peer0: registry.resolve("peer", 0),
    peer1: registry.resolve("peer", 1),
    peer2: registry.resolve("peer", 2),
  };
  const peerBytes: Record<string, Uint8Array> = {
    peer0: peerDev.region(0)!.memory!,
    peer1: peerDev.region(1)!.memory!,
    peer2: trapped.bytes,
  };
  const msgStore = (iova: bigint): Store => ({
    get: (i) => port.peek(iova + i, 1)[0]!,
    set: (i, v) => port.poke(iova + i, Uint8Array.of(v)),
  });
  const model = new Model();
  const fds: { close(): void }[] = [];
  try {
    for (const op of ops) {
      if (op.op === "map") {
        const iova = BASES[op.base]! + BigInt(op.page) * PAGE;
        const isPeer = op.kind.startsWith("peer");
        let size = BigInt(op.pages) * PAGE;
        let peerOff = 0;
        if (isPeer) {
          peerOff = op.peerOff * 512;
          size = BigInt(Math.min(Number(size) + op.extra, PEER_SIZE - peerOff));
        }
        // The model's verdict, in the order the real checks run.
        let expect = 0;
        if ((op.flags & ~3) !== 0 || (op.flags & 1) === 0) expect = 22;
        else if (size === 0n) expect = 22;
        else if (iova + size - 1n > U64_MAX) expect = 22;
        else if (!isPeer && size % PAGE !== 0n) expect = 22;
        else if (model.areas.length >= MAX_MAPS) expect = 28;
        else if (model.areas.some((x) => x.iova <= iova + size - 1n && iova <= x.last)) expect = 17;
        let got = 0;
        let fdOwner: { close(): void } | null = null;
        try {
          if (op.kind === "msg") s.map({ iova, size, flags: op.flags, fd: -1, offset: 0n });
          else if (op.kind === "fd") {
            const n = Number(size > 0n ? size : PAGE);
            const fd = native.memfdCreate("model", n, true);
            fdOwner = { close: () => native.close(fd) };
            fds.push(fdOwner);
            s.map({ iova, size, flags: op.flags, fd: native.dup(fd), offset: 0n });
            const mine = new Uint8Array(native.mmap(fd, n, 0, true));
            fds.push({ close: () => native.unmap(mine.buffer as ArrayBuffer) });
            if (expect === 0) {
              model.areas.push({
                iova,
                last: iova + size - 1n,
                flags: op.flags,
                kind: op.kind,
                store: regionStore(mine, 0),
              });
            }
          } else if (isPeer) {
            s.mapPeer(iova, targets[op.kind]!, op.flags, { offset: BigInt(peerOff), size });
          }
        } catch (err) {
          got = (err as { errno: number }).errno;
        }
        bump(`map ${op.kind} ${got}`);
        if (got !== expect)
          throw new Error(
            `map ${op.kind} [0x${iova.toString(16)} +0x${size.toString(16)}] flags ${op.flags}: errno ${got}, model ${expect}`,
          );
        if (expect === 0 && op.kind !== "fd") {
          const store = op.kind === "msg" ? msgStore(iova) : regionStore(peerBytes[op.kind]!, peerOff);
          model.areas.push({ iova, last: iova + size - 1n, flags: op.flags, kind: op.kind, store });
        }
      } else if (op.op === "unmap") {
        let iova: bigint;
        let size: bigint;
        const target = model.areas.length ? model.areas[op.pick % model.areas.length] : undefined;
        if (op.how === "random" || !target) {
          iova = BASES[op.base]! + BigInt(op.page) * PAGE;
          size = PAGE;
        } else {
          iova = target.iova;
          size = target.last - target.iova + 1n;
          if (op.how === "half") size = size > 1n ? size / 2n : 2n;
        }
        const idx = model.areas.findIndex((x) => x.iova === iova && x.last - x.iova + 1n === size);
        let got = 0;
        try {
          await s.unmap(iova, size);
        } catch (err) {
          got = (err as { errno: number }).errno;
        }
        if (got !== (idx >= 0 ? 0 : 2))
          throw new Error(`unmap [0x${iova.toString(16)} +0x${size.toString(16)}]: errno ${got}`);
        if (idx >= 0) model.areas.splice(idx, 1);
      } else if (op.op === "unmapAll") {
        await s.unmapAll();
        model.areas = [];
      } else {
        const near =
          op.near !== null && model.areas.length ? model.areas[op.near % model.areas.length] : undefined;
        let iova = BASES[op.base]! + BigInt(op.at);
        if (near) {
          const span = Number(near.last - near.iova) + 512;
          iova = near.iova + BigInt(op.at % span) - 256n;
          if (iova < 0n) iova = 0n;
        }
        const { length } = op;
        if (op.op === "write") {
          const data = Uint8Array.from({ length }, (_, i) => (op.seed + i * 7) & 0xff);
          const want = model.write(iova, data);
          const got = await dma.write(iova, data).then(
            () => null,
            (e: DmaFault) => e.kind,
          );
          bump(`write ${want.ok ? (length ? "ok" : "ok0") : want.fault}`);
          if (want.ok !== (got === null) || (!want.ok && want.fault !== got)) {
            throw new Error(
              `write 0x${iova.toString(16)}+${length}: ${got ?? "ok"}, model ${want.ok ? "ok" : want.fault}`,
            );
          }
          // The trapped peer region is the device's own memory: keep the model's copy in step.
          if (want.ok) trapped.bytes.set(await peerDev.read(2, 0n, PEER_SIZE));
        } else {
          const want = model.read(iova, length);
          let got: Uint8Array | string;
          if (op.op === "read") got = await dma.read(iova, length).catch((e: DmaFault) => e.kind);
          else if (op.op === "sg") {
            try {
              const list = dma.sg(iova, length, "read");
              got = await list.read();
              // Zero-copy segments show the same bytes as the copy.
              let o = 0;
              for (const seg of list.segments) {
                if (
                  seg.bytes &&
                  Buffer.compare(seg.bytes, (got as Uint8Array).subarray(o, o + seg.length)) !== 0
                ) {
                  throw new Error("a segment's bytes differ from the gathered copy");
                }
                o += seg.length;
              }
              list.release();
            } catch (e) {
              if (!(e instanceof DmaFault)) throw e;
              got = e.kind;
            }
          } else {
            try {
              const v = dma.view(iova, length, "read");
              got = v.bytes.slice();
              v.release();
              if (v.bytes.length !== 0) throw new Error("a released view still shows bytes");
            } catch (e) {
              if (!(e instanceof DmaFault)) throw e;
              got = e.kind;
            }
            // A view needs one mappable area; the model says where that holds.
            if (want.ok) {
              const x = length > 0 ? model.find(iova) : undefined;
              const oneArea = x !== undefined && iova + BigInt(length) - 1n <= x.last;
              const mappable = x !== undefined && x.kind !== "msg" && x.kind !== "peer2";
              const expected = length === 0 ? "out-of-range" : !oneArea || !mappable ? "not-mappable" : null;
              if (expected !== null) {
                bump(`view ${expected}`);
                if (got !== expected)
                  throw new Error(`view 0x${iova.toString(16)}+${length}: ${String(got)}, model ${expected}`);
                continue;
              }
            }
          }
          if (want.ok !== got instanceof Uint8Array) {
            throw new Error(
              `${op.op} 0x${iova.toString(16)}+${length}: ${got instanceof Uint8Array ? "ok" : got}, model ${want.ok ? "ok" : want.fault}`,
            );
          }
          if (want.ok && Buffer.compare(want.data!, got as Uint8Array) !== 0) {
            throw new Error(`${op.op} 0x${iova.toString(16)}+${length}: bytes differ from the model`);
          }
          bump(`${op.op} ${want.ok ? (length ? "ok" : "ok0") : want.fault}`);
          if (!want.ok && got !== want.fault)
            throw new Error(`${op.op}: fault ${String(got)}, model ${want.fault}`);
        }
      }
      s.verify();
      if (s.count !== model.areas.length) throw new Error(`${s.count} areas, model ${model.areas.length}`);
    }
  } finally {
    await s.unmapAll();
    reg.unregister();
    peerDev.dispose();
    for (const f of fds.reverse()) f.close();
  }
  if (dma.liveHandles !== 0) throw new Error(`${dma.liveHandles} handles left`);
}

t.test("random map/unmap/read/write/view/sg sequences agree with the model", async (t) => {
  const before = openFdCount();
  await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40, size: "max" }), run), {
    numRuns: 250,
  });
  t.equal(openFdCount(), before, "no fd left behind");
  if (process.env.MODEL_STATS) t.comment(JSON.stringify(stats, null, 1));
});

t.test("regression seeds: the edges the model found worth keeping", async (t) => {
  const top = BASES.length - 1;
  // An area ending exactly at 2^64-1, a read of its last byte, and a write that would wrap.
  await run([
    { op: "map", base: top, page: 15, pages: 1, flags: 3, kind: "msg", peerOff: 0, extra: 0 },
    { op: "write", base: top, at: 16 * 4096 - 1, length: 1, seed: 9, near: null },
    { op: "read", base: top, at: 16 * 4096 - 1, length: 1, seed: 0, near: null },
    { op: "write", base: top, at: 16 * 4096 - 1, length: 2, seed: 9, near: null },
    { op: "map", base: top, page: 15, pages: 2, flags: 3, kind: "msg", peerOff: 0, extra: 0 },
  ]);
  // fd, message and trapped peer areas side by side, crossed by one sg list.
  await run([
    { op: "map", base: 1, page: 0, pages: 1, flags: 3, kind: "fd", peerOff: 0, extra: 0 },
    { op: "map", base: 1, page: 1, pages: 1, flags: 3, kind: "msg", peerOff: 0, extra: 0 },
    { op: "map", base: 1, page: 2, pages: 0, flags: 3, kind: "peer2", peerOff: 0, extra: 100 },
    { op: "write", base: 1, at: 4000, length: 4300, seed: 3, near: null },
    { op: "sg", base: 1, at: 4000, length: 4300, seed: 0, near: null },
    { op: "view", base: 1, at: 100, length: 200, seed: 0, near: null },
  ]);
  t.pass();
});
