// Write combining, measured: a framebuffer-like fill of 64 KiB in 1-byte and 4-byte stores, from
// the TypeScript client over a real UNIX socket, into
//   - a trapped WC region (the server's write-combining buffer merges the stores),
//   - a trapped UC region (every store reaches the handler alone),
// each by posted REGION_WRITEs (one message per store, as QEMU sends MMIO writes) and by posted
// REGION_WRITE_MULTI (up to 200 stores per message, as QEMU coalesces them), and
//   - the mmapped WC view of a memory-backed region (plain stores into shared memory).
// The same two trapped paths once more with the messages encoded before the clock starts and sent
// as raw bytes (`sendRaw`, in chunks of up to 256 KiB, as a kernel socket buffer would carry a
// burst of QEMU's posted writes): what remains is the server's own cost per message and per
// store, the serverOnly* figures.
// And one program that honours the attribute the server reports, as a CPU does: it asks the client
// for a combining writer (granted for WC, refused for UC), so its stores to the WC region leave the
// client merged (one REGION_WRITE per 4 KiB run) while those to the UC region go one by one. Its
// ratio is the headline wcVsUcThroughput; the server-only ratios are reported beside it.
// The handler does a framebuffer's work per call: it copies the bytes into the framebuffer and
// marks the scanlines they touch dirty. Reported per case: handler calls per KiB written and bytes
// per second; each the median of several rounds (the cases interleaved within a round, so load
// from elsewhere on a shared machine hits them alike). The last line is one JSON object.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { native } from "../../native/index.ts";
import {
  Command,
  Device,
  defineDevice,
  encodeRegionWrite,
  encodeRegionWriteMulti,
  HeaderFlag,
  Server,
  VfioUserClient,
  type WriteMultiEntry,
} from "../../src/index.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
/** A regular expression: run only the cases whose names match (for profiling); no JSON line. */
const ONLY = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY) : null;
const FILL = 64 * 1024;
const PITCH = 1024; // bytes per scanline: 256 pixels of 4 bytes
const MULTI = 200; // entries per REGION_WRITE_MULTI, QEMU's batch

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const frame = new Uint8Array(FILL);
const dirty = new Uint8Array(FILL / PITCH);
let calls = 0;
const paint = (offset: number, data: Uint8Array) => {
  calls++;
  frame.set(data, offset);
  for (let line = Math.floor(offset / PITCH); line <= Math.floor((offset + data.length - 1) / PITCH); line++)
    dirty[line] = 1;
};

const def = defineDevice({
  name: "wc-bench",
  summary: "a framebuffer three ways",
  bus: "platform",
  regions: [
    { index: 0, name: "fb-wc", size: FILL, cache: "WC" },
    { index: 1, name: "fb-uc", size: FILL, cache: "UC" },
    { index: 2, name: "fb-mapped", size: FILL, memory: true, mmap: true, cache: "WC" },
  ],
  irqs: [],
  create: () => ({
    regions: {
      0: { write: paint, read: () => 0 },
      1: { write: paint, read: () => 0 },
    },
  }),
});

const dir = mkdtempSync(path.join(tmpdir(), "vfu-bench-wc-"));
const socketPath = path.join(dir, "wc.sock");
const server = new Server();
server.listen((dma, log) => new Device(def, { dma, log }), { socketPath });
const client = await VfioUserClient.connect(socketPath, { timeoutMs: 60000 });
const mapped = await client.mmapView(2);

type Case = { name: string; width: 1 | 4; run: () => Promise<void> };

const stores = (width: number) => {
  const out: Uint8Array[] = [];
  for (let at = 0; at < FILL; at += width)
    out.push(Uint8Array.from({ length: width }, (_, i) => (at + i) & 0xff));
  return out;
};
const data = { 1: stores(1), 4: stores(4) };

const posted = (region: number, width: 1 | 4) => async () => {
  const d = data[width];
  for (let i = 0; i < d.length; i++) void client.regionWrite(region, i * width, d[i]!, { posted: true });
  await client.regionRead(region, 0, 1); // applied (and flushed) before this read is answered
};
const multi = (region: number, width: 1 | 4) => async () => {
  const d = data[width];
  for (let i = 0; i < d.length; i += MULTI) {
    const entries: WriteMultiEntry[] = [];
    for (let j = i; j < Math.min(d.length, i + MULTI); j++)
      entries.push({ offset: BigInt(j * width), region, count: width, data: d[j]! });
    void client.writeMulti(entries, { posted: true });
  }
  await client.regionRead(region, 0, 1);
};
/** Pre-encoded messages, concatenated into chunks of up to 256 KiB: sending them costs the client
 * a copy into the socket and nothing else. */
const CHUNK = 256 * 1024;
const chunked = (messages: Uint8Array[]): Uint8Array[] => {
  const out: Uint8Array[] = [];
  let i = 0;
  while (i < messages.length) {
    let size = 0;
    let j = i;
    while (j < messages.length && size + messages[j]!.length <= CHUNK) size += messages[j++]!.length;
    const chunk = new Uint8Array(size);
    let at = 0;
    for (; i < j; i++) {
      chunk.set(messages[i]!, at);
      at += messages[i]!.length;
    }
    out.push(chunk);
  }
  return out;
};
const POSTED = HeaderFlag.COMMAND | HeaderFlag.NO_REPLY;
const encodedPosted = (region: number, width: 1 | 4) =>
  chunked(
    data[width].map((d, i) =>
      VfioUserClient.rawMessage(
        { msgId: i & 0xffff, command: Command.REGION_WRITE, flags: POSTED },
        encodeRegionWrite({ offset: BigInt(i * width), region, count: width, data: d }),
      ),
    ),
  );
const encodedMulti = (region: number, width: 1 | 4) => {
  const d = data[width];
  const messages: Uint8Array[] = [];
  for (let i = 0; i < d.length; i += MULTI) {
    const entries: WriteMultiEntry[] = [];
    for (let j = i; j < Math.min(d.length, i + MULTI); j++)
      entries.push({ offset: BigInt(j * width), region, count: width, data: d[j]! });
    messages.push(
      VfioUserClient.rawMessage(
        { msgId: (i / MULTI) & 0xffff, command: Command.REGION_WRITE_MULTI, flags: POSTED },
        encodeRegionWriteMulti(entries),
      ),
    );
  }
  return chunked(messages);
};
const raw = (region: number, chunks: Uint8Array[]) => async () => {
  for (const c of chunks) void client.sendRaw(c);
  await client.regionRead(region, 0, 1); // applied (and flushed) before this read is answered
};

const store = (width: 1 | 4) => async () => {
  const b = mapped.bytes;
  if (width === 1) for (let i = 0; i < FILL; i++) b[i] = i & 0xff;
  else {
    const w = new Uint32Array(b.buffer, b.byteOffset, FILL / 4);
    for (let i = 0; i < w.length; i++) w[i] = i * 0x04040404 + 0x03020100;
  }
};

/** The same fill for any region: combined by the client when the region allows it. */
const honouring = (region: number, width: 1 | 4) => async () => {
  const writer = await client.combiningWriter(region).catch(() => null);
  const d = data[width];
  if (writer) for (let i = 0; i < d.length; i++) writer.write(i * width, d[i]!);
  else for (let i = 0; i < d.length; i++) void client.regionWrite(region, i * width, d[i]!, { posted: true });
  await client.regionRead(region, 0, 1);
};

const cases: Case[] = [];
for (const width of [1, 4] as const) {
  cases.push({ name: `wc-client-${width}`, width, run: honouring(0, width) });
  cases.push({ name: `uc-client-${width}`, width, run: honouring(1, width) });
  cases.push({ name: `wc-posted-${width}`, width, run: posted(0, width) });
  cases.push({ name: `uc-posted-${width}`, width, run: posted(1, width) });
  cases.push({ name: `wc-multi-${width}`, width, run: multi(0, width) });
  cases.push({ name: `uc-multi-${width}`, width, run: multi(1, width) });
  cases.push({ name: `wc-rawpost-${width}`, width, run: raw(0, encodedPosted(0, width)) });
  cases.push({ name: `uc-rawpost-${width}`, width, run: raw(1, encodedPosted(1, width)) });
  cases.push({ name: `wc-rawmulti-${width}`, width, run: raw(0, encodedMulti(0, width)) });
  cases.push({ name: `uc-rawmulti-${width}`, width, run: raw(1, encodedMulti(1, width)) });
  cases.push({ name: `mapped-${width}`, width, run: store(width) });
}

if (ONLY) cases.splice(0, cases.length, ...cases.filter((c) => ONLY.test(c.name)));

const rate: Record<string, number[]> = Object.fromEntries(cases.map((c) => [c.name, []]));
const perKiB: Record<string, number[]> = Object.fromEntries(cases.map((c) => [c.name, []]));
for (const c of cases) await c.run(); // warm-up
for (let r = 0; r < ROUNDS; r++) {
  for (const c of cases) {
    const before = calls;
    const t0 = process.hrtime.bigint();
    await c.run();
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    rate[c.name]!.push(FILL / s);
    perKiB[c.name]!.push((calls - before) / (FILL / 1024));
  }
}

const m = (k: string) => median(rate[k]!);
const k = (k: string) => median(perKiB[k]!);
console.log(`medians of ${ROUNDS} rounds, a ${FILL / 1024} KiB fill each:`);
console.log(`${"case".padEnd(16)} ${"handler calls/KiB".padStart(18)} ${"MB/s".padStart(10)}`);
for (const c of cases) {
  console.log(
    `${c.name.padEnd(16)} ${k(c.name).toFixed(2).padStart(18)} ${(m(c.name) / 1e6).toFixed(3).padStart(10)}`,
  );
}

native.unmap(mapped.bytes.buffer as ArrayBuffer);
client.close();
await server.close();
rmSync(dir, { recursive: true, force: true });

const round3 = (x: number) => Number(x.toFixed(3));
if (!ONLY)
  console.log(
    JSON.stringify({
      wcHandlerCallsPerKiB: round3(k("wc-client-1")),
      ucHandlerCallsPerKiB: round3(k("uc-client-1")),
      wcVsUcThroughput: round3(m("wc-client-1") / m("uc-client-1")),
      wcVsUcThroughput4: round3(m("wc-client-4") / m("uc-client-4")),
      clientPostedWcHandlerCallsPerKiB: round3(k("wc-posted-1")),
      clientPostedWcVsUcThroughput: round3(m("wc-posted-1") / m("uc-posted-1")),
      wcMultiHandlerCallsPerKiB: round3(k("wc-multi-1")),
      ucMultiHandlerCallsPerKiB: round3(k("uc-multi-1")),
      wcVsUcMultiThroughput: round3(m("wc-multi-1") / m("uc-multi-1")),
      clientPostedWcVsUcThroughput4: round3(m("wc-posted-4") / m("uc-posted-4")),
      wcVsUcMultiThroughput4: round3(m("wc-multi-4") / m("uc-multi-4")),
      // The server alone: pre-encoded messages sent as raw bytes.
      serverOnlyPostedWcHandlerCallsPerKiB: round3(k("wc-rawpost-1")),
      serverOnlyPostedUcHandlerCallsPerKiB: round3(k("uc-rawpost-1")),
      serverOnlyPostedWcVsUc: round3(m("wc-rawpost-1") / m("uc-rawpost-1")),
      serverOnlyPostedWcVsUc4: round3(m("wc-rawpost-4") / m("uc-rawpost-4")),
      serverOnlyMultiWcHandlerCallsPerKiB: round3(k("wc-rawmulti-1")),
      serverOnlyMultiUcHandlerCallsPerKiB: round3(k("uc-rawmulti-1")),
      serverOnlyMultiWcVsUc: round3(m("wc-rawmulti-1") / m("uc-rawmulti-1")),
      serverOnlyMultiWcVsUc4: round3(m("wc-rawmulti-4") / m("uc-rawmulti-4")),
      serverOnlyPostedWcBytesPerSec: Math.round(m("wc-rawpost-1")),
      serverOnlyPostedUcBytesPerSec: Math.round(m("uc-rawpost-1")),
      serverOnlyMultiWcBytesPerSec: Math.round(m("wc-rawmulti-1")),
      serverOnlyMultiUcBytesPerSec: Math.round(m("uc-rawmulti-1")),
      serverOnlyMultiWcBytesPerSec4: Math.round(m("wc-rawmulti-4")),
      serverOnlyMultiUcBytesPerSec4: Math.round(m("uc-rawmulti-4")),
      wcClientBytesPerSec: Math.round(m("wc-client-1")),
      wcPostedBytesPerSec: Math.round(m("wc-posted-1")),
      ucPostedBytesPerSec: Math.round(m("uc-posted-1")),
      wcMultiBytesPerSec: Math.round(m("wc-multi-1")),
      ucMultiBytesPerSec: Math.round(m("uc-multi-1")),
      mappedBytesPerSec: Math.round(m("mapped-1")),
      mappedVsTrappedWc: round3(m("mapped-1") / m("wc-multi-1")),
    }),
  );
