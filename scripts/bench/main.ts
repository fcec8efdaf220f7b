// `npm run bench`: region-access round trips between the TypeScript client and the server over a
// real UNIX socket, against the ceiling of a raw socketpair ping-pong through the same addon;
// then DMA through the IOMMU model (dma.ts), NVMe commands driven by the client (nvme.ts) and
// write combining, WC against UC, trapped against mapped (wc.ts).
// The last line is one JSON object with every section's figures.
// Both ends run in this one process (as in the tests), so each figure counts both sides' work.
// Each figure is the median of several rounds after a warm-up; syncVsRaw is the median of the
// per-round ratios. The last line printed is one
// JSON object with the figures.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Reg, scratchpad } from "../../devices/scratchpad/index.ts";
import { native, PollEvent } from "../../native/index.ts";
import { Device, Server, VfioUserClient } from "../../src/index.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const OPS = Number(process.env.BENCH_OPS ?? 20000);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function timed(ops: number, run: () => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await run();
  return ops / (Number(process.hrtime.bigint() - t0) / 1e9);
}

/** Ping-pong a 32-byte message over a socketpair, each end driven by its own Poller, as the
 * transports are: the ceiling for one request/reply round trip through the addon and the loop. */
function rawPingPong(ops: number): Promise<void> {
  const [a, b] = native.socketPair();
  const msg = new Uint8Array(32);
  const buf = new Uint8Array(4096);
  return new Promise((resolve) => {
    let left = ops;
    const pb = new native.Poller(b, () => {
      const r = native.recvMsg(b, buf, 0, buf.length, 8);
      if (r && r.bytes > 0) native.sendMsg(b, msg, 0, msg.length, []);
    });
    const pa = new native.Poller(a, () => {
      const r = native.recvMsg(a, buf, 0, buf.length, 8);
      if (!r || r.bytes === 0) return;
      if (--left === 0) {
        pa.close();
        pb.close();
        native.close(a);
        native.close(b);
        resolve();
        return;
      }
      native.sendMsg(a, msg, 0, msg.length, []);
    });
    pa.start(PollEvent.READABLE);
    pb.start(PollEvent.READABLE);
    native.sendMsg(a, msg, 0, msg.length, []);
  });
}

const dir = mkdtempSync(path.join(tmpdir(), "vfu-bench-"));
const socketPath = path.join(dir, "bench.sock");
const server = new Server();
server.listen((dma, log) => new Device(scratchpad, { dma, log }), { socketPath });
// Posted writes queue up behind one another: allow the final read more than the usual 5 s.
const client = await VfioUserClient.connect(socketPath, { timeoutMs: 60000 });
const value = new Uint8Array([1, 2, 3, 4]);

const postedOps = OPS;
const kinds = {
  syncWrites: async () => {
    for (let i = 0; i < OPS; i++) await client.regionWrite(0, Reg.SCRATCH, value);
  },
  syncReads: async () => {
    for (let i = 0; i < OPS; i++) await client.regionRead(0, Reg.SCRATCH, 4);
  },
  posted: async () => {
    for (let i = 0; i < postedOps; i++) await client.regionWrite(0, Reg.SCRATCH, value, { posted: true });
    // One synchronous read drains the queue: every posted write has been applied before it.
    await client.regionRead(0, Reg.SCRATCH, 4);
  },
  raw: () => rawPingPong(OPS),
};
// The kinds are interleaved within each round, so that a burst of load from elsewhere on a
// shared machine hits all of them alike; ratios are taken per round, then the median.
const samples: Record<keyof typeof kinds, number[]> = { syncWrites: [], syncReads: [], posted: [], raw: [] };
const ratios: number[] = [];
for (const run of Object.values(kinds)) await run(); // warm-up
for (let r = 0; r < ROUNDS; r++) {
  for (const [k, run] of Object.entries(kinds) as [keyof typeof kinds, () => Promise<void>][]) {
    samples[k].push(await timed(OPS, run));
  }
  ratios.push(samples.syncWrites.at(-1)! / samples.raw.at(-1)!);
}
const syncWrites = median(samples.syncWrites);
const syncReads = median(samples.syncReads);
const posted = median(samples.posted);
const raw = median(samples.raw);
const show = (label: string, v: number) =>
  console.log(`${label.padEnd(28)} ${Math.round(v).toString().padStart(9)} /s`);
console.log(`medians of ${ROUNDS} rounds of ${OPS} operations each:`);
show("sync REGION_WRITE", syncWrites);
show("sync REGION_READ", syncReads);
show("posted REGION_WRITE", posted);
show("raw socketpair ping-pong", raw);
console.log(`sync writes / raw ping-pong, per round: ${ratios.map((x) => x.toFixed(2)).join(" ")}`);

client.close();
await server.close();
rmSync(dir, { recursive: true, force: true });

// The other sections run in their own processes (a fresh heap each), each ending with a JSON line.
function section(script: string): Record<string, number> {
  console.log(`\n--- ${script}`);
  const r = spawnSync(process.execPath, ["--import", "tsx", path.join(here, script)], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = r.stdout.trim().split("\n");
  for (const l of lines.slice(0, -1)) console.log(l);
  if (r.status !== 0) throw new Error(`${script} failed (exit ${r.status})`);
  return JSON.parse(lines.at(-1)!) as Record<string, number>;
}
const dmaFigures = section("dma.ts");
const nvmeFigures = section("nvme.ts");
const wcFigures = section("wc.ts");

const result = {
  syncWritesPerSec: Math.round(syncWrites),
  syncReadsPerSec: Math.round(syncReads),
  postedWritesPerSec: Math.round(posted),
  rawPingPongPerSec: Math.round(raw),
  syncVsRaw: Number(median(ratios).toFixed(3)),
  ...dmaFigures,
  ...nvmeFigures,
  ...wcFigures,
  rounds: ROUNDS,
  node: process.version,
};
console.log(JSON.stringify(result));
