// The in-place write paths (Device.writeFrom, and the REGION_WRITE / REGION_WRITE_MULTI handlers
// that read stores straight out of the message body) against the plain ones (Device.write with a
// view and a bigint, a device model without writeFrom): the same handler calls in the same order,
// the same errors, the same flush counts, the same replies. Differential: every case runs both
// ways and the two records must be equal, besides the expectations written out.
import t from "tap";
import {
  Command,
  Device,
  DeviceDma,
  type DeviceFactory,
  type DeviceModel,
  defineDevice,
  encodeRegionWrite,
  encodeRegionWriteMulti,
  HeaderFlag,
  silentLogger,
  VfioUserClient,
  WC_BUFFER_BYTES,
  type WriteMultiEntry,
} from "../../src/index.ts";
import { memoryHarness, replyErrno, settle } from "../helpers/harness.ts";

type Call = [string, number, number[]];

/** 0 "fb" WC; 1 "regs" UC, 4-byte; 2 "fb2" WC; 3 "wb" WB memory; 4 "ro" WC read-only;
 * 5 "sized" WC decoding 1- and 4-byte stores only. */
function definition(calls: Call[], asyncWc: boolean) {
  const rec = (name: string) => (offset: number, data: Uint8Array) => {
    calls.push([name, offset, [...data]]);
    if (asyncWc && name !== "regs") return Promise.resolve();
  };
  return defineDevice({
    name: "wc-fastpath-rig",
    summary: "in-place writes vs plain writes",
    bus: "platform",
    regions: [
      { index: 0, name: "fb", size: 0x10000, cache: "WC" },
      { index: 1, name: "regs", size: 0x100, accessSizes: [4], cache: "UC" },
      { index: 2, name: "fb2", size: 0x1000, cache: "WC" },
      { index: 3, name: "wb", size: 0x1000, memory: true, cache: "WB" },
      { index: 4, name: "ro", size: 0x100, writable: false, cache: "WC" },
      { index: 5, name: "sized", size: 0x100, accessSizes: [1, 4], cache: "WC" },
    ],
    irqs: [],
    create: () => ({
      regions: {
        0: { write: rec("fb"), read: () => 0 },
        1: { write: rec("regs"), read: () => 0 },
        2: { write: rec("fb2"), read: () => 0 },
        3: { write: rec("wb") },
        4: { read: () => 0 },
        5: { write: rec("sized"), read: () => 0 },
      },
    }),
  });
}

function device(calls: Call[], opts: { asyncWc?: boolean; wcBufferBytes?: number } = {}): Device {
  return new Device(definition(calls, opts.asyncWc ?? false), {
    dma: new DeviceDma(silentLogger),
    log: silentLogger,
    wcBufferBytes: opts.wcBufferBytes,
  });
}

/** The same device seen through a model without writeFrom: the session takes the plain path. */
function plain(d: Device): DeviceModel {
  return {
    name: d.name,
    flags: d.flags,
    get numRegions() {
      return d.numRegions;
    },
    irqs: d.irqs,
    region: (i) => d.region(i),
    regionCaps: (i) => d.regionCaps(i),
    flushWrites: (r) => d.flushWrites(r),
    read: (i, o, c) => d.read(i, o, c),
    write: (i, o, data) => d.write(i, o, data),
    reset: () => d.reset(),
    disconnect: () => d.disconnect(),
    dispose: () => d.dispose(),
  };
}

/** xorshift32: the same sequence every run. */
function prng(seed: number) {
  let x = seed >>> 0 || 1;
  return (n: number) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

type Op =
  | { kind: "write"; region: number; offset: number; bytes: number[] }
  | { kind: "read"; region: number }
  | { kind: "fence" };

/** Mostly runs of adjacent small stores (ascending, sometimes descending), with gaps, other
 * regions, UC stores, bad regions, offsets and widths, reads and fences among them. */
function ops(seed: number, n: number): Op[] {
  const r = prng(seed);
  const out: Op[] = [];
  let region = 0;
  let at = 0;
  for (let i = 0; i < n; i++) {
    const roll = r(100);
    if (roll < 3) {
      out.push({ kind: "read", region: r(6) });
      continue;
    }
    if (roll < 5) {
      out.push({ kind: "fence" });
      continue;
    }
    if (roll < 12) region = [0, 1, 2, 3, 4, 5, 9][r(7)]!;
    const width = [1, 1, 1, 2, 4, 4, 8, 0, 3][r(9)]!;
    if (roll < 20) at = r(0x1100);
    else if (roll < 22) at = [0xffff, 0x10000, 0x1_0000_0000, 2 ** 53 - 1][r(4)]!;
    else if (roll < 30) at = Math.max(0, at - 2 * width);
    const bytes = Array.from({ length: width }, () => r(256));
    out.push({ kind: "write", region, offset: at, bytes });
    at += width;
  }
  return out;
}

const outcome = (err: unknown) =>
  `error ${(err as { errno?: number }).errno}: ${err instanceof Error ? err.message : String(err)}`;

/** Apply ops one by one, awaiting each; record every op's outcome. `inPlace`: writeFrom, the
 * bytes somewhere inside a larger buffer; else write with a view of exactly the bytes. */
async function drive(d: Device, list: Op[], inPlace: boolean): Promise<string[]> {
  const seen: string[] = [];
  const carrier = new Uint8Array(64);
  for (const op of list) {
    try {
      if (op.kind === "read") await d.read(op.region, 0n, op.region === 1 ? 4 : 1);
      else if (op.kind === "fence") await d.fence();
      else if (inPlace) {
        const start = 7 + (op.offset % 13);
        carrier.fill(0xee);
        carrier.set(op.bytes, start);
        await d.writeFrom(op.region, op.offset, carrier, start, op.bytes.length);
        carrier.fill(0xdd); // whatever the device kept must not have been a view of this
      } else {
        await d.write(op.region, BigInt(op.offset), Uint8Array.from(op.bytes));
      }
      seen.push("ok");
    } catch (err) {
      seen.push(outcome(err));
    }
  }
  await d.flushWrites("batch");
  return seen;
}

for (const [name, opts] of [
  ["default buffer", {}],
  ["a 64-byte buffer (runs cross the limit often)", { wcBufferBytes: 64 }],
  ["asynchronous WC handlers", { asyncWc: true }],
  ["asynchronous WC handlers, 64-byte buffer", { asyncWc: true, wcBufferBytes: 64 }],
] as const) {
  t.test(`Device.writeFrom matches Device.write: ${name}`, async (t) => {
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const list = ops(seed, 3000);
      const a: Call[] = [];
      const b: Call[] = [];
      const da = device(a, opts);
      const db = device(b, opts);
      const ra = await drive(da, list, false);
      const rb = await drive(db, list, true);
      t.same(rb, ra, `seed ${seed}: the same outcome for every op`);
      t.same(b, a, `seed ${seed}: the same handler calls in the same order`);
      t.same(db.wcStats, da.wcStats, `seed ${seed}: the same flushes`);
      t.ok(
        ra.some((x) => x !== "ok"),
        `seed ${seed}: some ops failed (the error paths were exercised)`,
      );
      da.dispose();
      db.dispose();
    }
  });
}

/** Runs of n stores of one width at consecutive offsets, the bytes strided in a carrier: some
 * start in the middle of the pending run or before it, some cross the buffer's limit or the
 * region's end, some go to UC, read-only, width-checked or missing regions. */
function runs(seed: number, count: number) {
  const r = prng(seed);
  const out: { region: number; offset: number; width: number; n: number; stride: number; start: number }[] =
    [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    const region = [0, 0, 0, 0, 2, 2, 3, 1, 4, 5, 9][r(11)]!;
    const width = [1, 1, 2, 3, 4, 8, 0][r(7)]!;
    const n = 1 + r(300);
    const roll = r(10);
    if (roll < 2) at = r(0x1100);
    else if (roll < 3) at = Math.max(0, at - r(40));
    else if (roll < 4) at = 0x1000 - r(3) * width - r(2);
    else if (roll < 5) at = 0x10000 - r(200);
    const stride = width + r(24);
    out.push({ region, offset: at, width, n, stride, start: r(5) });
    at += width * n;
  }
  return out;
}

for (const [name, opts] of [
  ["default buffer", {}],
  ["a 64-byte buffer", { wcBufferBytes: 64 }],
  ["asynchronous WC handlers, 64-byte buffer", { asyncWc: true, wcBufferBytes: 64 }],
] as const) {
  t.test(`Device.writeRunFrom matches writeFrom store by store: ${name}`, async (t) => {
    for (const seed of [11, 12, 13, 14, 15, 16]) {
      const list = runs(seed, 400);
      const a: Call[] = [];
      const b: Call[] = [];
      const da = device(a, opts);
      const db = device(b, opts);
      const ra: string[] = [];
      const rb: string[] = [];
      for (const run of list) {
        const src = Uint8Array.from(
          { length: run.start + run.stride * run.n + 8 },
          (_, i) => (i * 7 + seed) & 0xff,
        );
        try {
          // One by one, stopping at the first failure, as the handler does.
          for (let k = 0; k < run.n; k++)
            await da.writeFrom(
              run.region,
              run.offset + k * run.width,
              src,
              run.start + k * run.stride,
              run.width,
            );
          ra.push("ok");
        } catch (err) {
          ra.push(outcome(err));
        }
        try {
          await db.writeRunFrom(run.region, run.offset, src, run.start, run.width, run.stride, run.n);
          rb.push("ok");
        } catch (err) {
          rb.push(outcome(err));
        }
        if (run.n % 17 === 0) {
          await da.read(0, 0n, 1);
          await db.read(0, 0n, 1);
        }
      }
      await da.flushWrites("batch");
      await db.flushWrites("batch");
      t.same(rb, ra, `seed ${seed}: the same outcome for every run`);
      t.same(b, a, `seed ${seed}: the same handler calls in the same order`);
      t.same(db.wcStats, da.wcStats, `seed ${seed}: the same flushes`);
      t.ok(ra.some((x) => x !== "ok") && ra.some((x) => x === "ok"), `seed ${seed}: both outcomes seen`);
      t.ok(da.wcStats.flushes.gap > 0, `seed ${seed}: gap flushes seen`);
      if ("wcBufferBytes" in opts) t.ok(da.wcStats.flushes.full > 0, `seed ${seed}: full flushes seen`);
      da.dispose();
      db.dispose();
    }
  });
}

t.test("writeRunFrom: a run that fails in the middle leaves the stores before it applied", async (t) => {
  const calls: Call[] = [];
  const d = device(calls);
  const src = Uint8Array.from({ length: 24 * 10 }, (_, i) => i & 0xff);
  // fb2 is 0x1000 bytes: from 0xffc, four 1-byte stores fit and the fifth is outside.
  t.throws(() => d.writeRunFrom(2, 0xffc, src, 16, 1, 24, 10), /outside region fb2/);
  t.equal(d.wcStats.buffered, 4);
  d.flushWrites("batch");
  t.same(calls, [["fb2", 0xffc, [16, 40, 64, 88]]]);
  d.dispose();
});

t.test("writeFrom: a run of stores straight into the buffer, full at the limit exactly", async (t) => {
  const calls: Call[] = [];
  const d = device(calls);
  const body = new Uint8Array(WC_BUFFER_BYTES + 100).map((_, i) => i & 0xff);
  for (let i = 0; i < WC_BUFFER_BYTES + 10; i++) d.writeFrom(0, 100 + i, body, i, 1);
  t.equal(calls.length, 1, "one call for the full page");
  t.same(calls[0]!.slice(0, 1), ["fb"]);
  t.equal(calls[0]![1], 100);
  t.same(calls[0]![2], [...body.subarray(0, WC_BUFFER_BYTES)]);
  t.equal(d.wcStats.flushes.full, 1);
  d.flushWrites("batch");
  t.same(calls[1], ["fb", 100 + WC_BUFFER_BYTES, [...body.subarray(WC_BUFFER_BYTES, WC_BUFFER_BYTES + 10)]]);
  t.equal(d.wcStats.buffered, WC_BUFFER_BYTES + 10);
  d.dispose();
});

// ---- through a session: the handlers' in-place reading against the plain model ---------------

interface Side {
  calls: Call[];
  replies: string[];
}

/** Serve one device twice over (in place, and through `plain`), send each side the same raw
 * messages, all in one batch (sent in one turn), and return what each saw. */
async function bothWays(
  messages: { command: number; body: Uint8Array; posted?: boolean }[],
): Promise<[Side, Side]> {
  const sides: Side[] = [];
  for (const inPlace of [true, false]) {
    const calls: Call[] = [];
    const factory: DeviceFactory = (dma, log) => {
      const d = new Device(definition(calls, false), { dma, log });
      return inPlace ? d : plain(d);
    };
    const h = await memoryHarness({ factory });
    const pending = messages.map((m, i) => {
      const msgId = 0x6000 + i;
      const flags = m.posted ? HeaderFlag.COMMAND | HeaderFlag.NO_REPLY : HeaderFlag.COMMAND;
      const raw = VfioUserClient.rawMessage({ msgId, command: m.command, flags }, m.body);
      return h.client.sendRaw(raw, [], m.posted ? undefined : msgId);
    });
    const replies = (await Promise.all(pending)).map((reply) =>
      reply ? `errno ${replyErrno(reply)} body ${[...reply.body].join(",")}` : "posted",
    );
    await h.client.regionRead(0, 0n, 1); // a read of fb flushes
    await settle();
    t.equal(h.client.unexpected.length, 0, "no reply to a posted message");
    sides.push({ calls: [...calls], replies });
    await h.close();
  }
  return [sides[0]!, sides[1]!];
}

const e = (region: number, offset: number | bigint, ...bytes: number[]): WriteMultiEntry => ({
  region,
  offset: BigInt(offset),
  count: bytes.length,
  data: Uint8Array.from(bytes),
});
const multi = (entries: WriteMultiEntry[], posted = false) => ({
  command: Command.REGION_WRITE_MULTI,
  body: encodeRegionWriteMulti(entries),
  posted,
});

t.test("REGION_WRITE_MULTI: a bad entry in the middle of a WC run", async (t) => {
  const run = (base: number) => Array.from({ length: 10 }, (_, i) => e(0, base + i, i + 1));
  const after = (base: number) => Array.from({ length: 5 }, (_, i) => e(0, base + 10 + i, 0x50 + i));
  for (const bad of [e(0, 0x10000, 9), e(9, 0, 9), e(4, 0, 9), e(5, 0, 9, 9), e(0, 1n << 60n, 9)]) {
    const [inPlace, plainSide] = await bothWays([
      multi([...run(0), bad, ...after(0)]),
      multi([...run(0x100), bad, ...after(0x100)], true),
    ]);
    t.same(inPlace, plainSide, `region ${bad.region} offset ${bad.offset}: the same both ways`);
    t.same(inPlace.replies, ["errno 22 body ", "posted"]);
    t.same(inPlace.calls, [
      ["fb", 0, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]],
      ["fb", 0x100, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]],
    ]);
  }
});

t.test("REGION_WRITE_MULTI: a run crossing the 4096-byte limit, across messages", async (t) => {
  const messages = [];
  for (let m = 0; m < 25; m++)
    messages.push(
      multi(
        Array.from({ length: 200 }, (_, i) => e(0, 100 + m * 200 + i, (m * 200 + i) & 0xff)),
        m % 2 === 1,
      ),
    );
  const [inPlace, plainSide] = await bothWays(messages);
  t.same(inPlace, plainSide, "the same both ways");
  t.equal(inPlace.calls.length, 2);
  t.same(
    inPlace.calls.map(([n, o, b]) => [n, o, b.length]),
    [
      ["fb", 100, 4096],
      ["fb", 100 + 4096, 5000 - 4096],
    ],
  );
  t.ok(
    inPlace.calls[0]![2].every((v, i) => v === (i & 0xff)),
    "the bytes, in order",
  );
});

t.test("REGION_WRITE_MULTI and REGION_WRITE: mixed regions, random, the same both ways", async (t) => {
  const r = prng(42);
  const messages = [];
  for (let m = 0; m < 60; m++) {
    const entries: WriteMultiEntry[] = [];
    let at = r(0x800);
    for (let i = 0; i < 1 + r(200); i++) {
      const roll = r(100);
      if (roll < 8) entries.push(e(1, 4 * r(0x40), r(256), r(256), r(256), r(256)));
      else if (roll < 14) entries.push(e(2, r(0x1000), r(256)));
      else if (roll < 16) entries.push(e(3, r(0x1000), r(256), r(256)));
      else if (roll < 17) entries.push(e(0, 0xffff + r(3), r(256), r(256)));
      else if (roll < 18) entries.push(e(0, (1n << 32n) + BigInt(r(4)), r(256)));
      else {
        const w = [1, 1, 2, 4, 8][r(5)]!;
        entries.push(e(0, at, ...Array.from({ length: w }, () => r(256))));
        at += w;
      }
    }
    messages.push(multi(entries, r(2) === 0));
    const offset = r(10) === 0 ? (BigInt(r(4)) << 32n) + BigInt(r(0x100)) : BigInt(r(0x10000));
    const region = [0, 0, 0, 1, 2, 9][r(6)]!;
    const count = region === 1 ? 4 : r(3);
    messages.push({
      command: Command.REGION_WRITE,
      body: encodeRegionWrite({
        offset,
        region,
        count,
        data: Uint8Array.from({ length: count }, () => r(256)),
      }),
      posted: r(2) === 0,
    });
  }
  // Malformed REGION_WRITE bodies take the decoder either way: the same errors.
  const short = new Uint8Array(12);
  const long = encodeRegionWrite({ offset: 0n, region: 0, count: 1, data: Uint8Array.of(1) });
  messages.push({ command: Command.REGION_WRITE, body: short });
  messages.push({ command: Command.REGION_WRITE, body: Uint8Array.from([...long, 7]) });
  const [inPlace, plainSide] = await bothWays(messages);
  t.same(inPlace.replies, plainSide.replies, "the same replies");
  t.same(inPlace.calls, plainSide.calls, "the same handler calls in the same order");
  t.ok(
    inPlace.replies.some((x) => x.startsWith("errno 22")),
    "some messages failed",
  );
  t.ok(
    inPlace.replies.some((x) => x.startsWith("errno 0")),
    "some succeeded",
  );
});
