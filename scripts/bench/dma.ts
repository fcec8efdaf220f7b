// DMA through the IOMMU model (part of `npm run bench`): translation cost with 1, 1,000 and
// 65,535 areas — a hit (the same area again: the last-hit cache) and a miss (a different area
// each time: the B+ tree) — and copy bandwidth of device DMA through `view`, `read` and `write`
// for 4 KiB and 1 MiB, against a plain typed-array copy of the same size in the same run.
// Prints figures, then one JSON line. Medians of several rounds.
import { native } from "../../native/index.ts";
import { AddressSpace } from "../../src/iommu/address-space.ts";
import { DeviceDma } from "../../src/iommu/dma.ts";
import { silentLogger } from "../../src/util/log.ts";

const ROUNDS = 7;
const RW = 3;
const PAGE = 0x1000n;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Median ns per call of `fn` over `ops` calls. */
function nsPer(ops: number, fn: (i: number) => unknown): number {
  const samples: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < ops; i++) fn(i);
    samples.push(Number(process.hrtime.bigint() - t0) / ops);
  }
  return median(samples);
}

async function nsPerAsync(ops: number, fn: () => Promise<unknown>): Promise<number> {
  const samples: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < ops; i++) await fn();
    samples.push(Number(process.hrtime.bigint() - t0) / ops);
  }
  return median(samples);
}

const out: Record<string, number> = {};

// --- translation -------------------------------------------------------------------------------
for (const n of [1, 1000, 65535]) {
  const space = new AddressSpace({ maxDmaMaps: 65535, pgsize: 4096, log: null });
  // Message-backed 4 KiB areas two pages apart: translation does not depend on the backing.
  for (let i = 0; i < n; i++)
    space.map({ iova: BigInt(i) * 2n * PAGE, size: PAGE, flags: RW, fd: -1, offset: 0n });
  const probes = Array.from(
    { length: 4096 },
    () => BigInt(Math.floor(Math.random() * n)) * 2n * PAGE + 0x10n,
  );
  const hitAddr = probes[0]!;
  space.find(hitAddr);
  const hit = nsPer(200_000, () => space.find(hitAddr));
  // Consecutive probes land in different areas (when there is more than one), so the cache misses.
  const miss = n === 1 ? hit : nsPer(200_000, (i) => space.find(probes[i & 4095]!));
  console.log(
    `translate, ${String(n).padStart(5)} areas: hit ${hit.toFixed(0).padStart(5)} ns   miss ${miss.toFixed(0).padStart(5)} ns`,
  );
  if (n === 1) out.translateNsHit = Number(hit.toFixed(1));
  out[`translateNsMiss${n}`] = Number(miss.toFixed(1));
  await space.unmapAll();
}

// --- copy bandwidth ----------------------------------------------------------------------------
const SIZE = 4 * 1024 * 1024;
const space = new AddressSpace({ maxDmaMaps: 16, pgsize: 4096, log: null });
const fd = native.memfdCreate("bench-dma", SIZE, true);
space.map({ iova: 0x100000n, size: BigInt(SIZE), flags: RW, fd, offset: 0n });
const dma = new DeviceDma(silentLogger);
dma.attach(space);
const client = new Uint8Array(SIZE).fill(7);
await dma.write(0x100000n, client);

for (const [label, length, ops] of [
  ["4KiB", 4096, 20_000],
  ["1MiB", 1024 * 1024, 200],
] as const) {
  const src = new Uint8Array(length).fill(1);
  const dst = new Uint8Array(length);
  const gbps = (ns: number) => length / ns; // bytes per ns = GB/s
  const memcpy = nsPer(ops, () => dst.set(src));
  const view = nsPer(ops, () => {
    const v = dma.view(0x100000n, length, "read");
    dst.set(v.bytes);
    v.release();
  });
  const read = await nsPerAsync(ops, () => dma.read(0x100000n, length));
  const write = await nsPerAsync(ops, () => dma.write(0x100000n, src));
  console.log(
    `copy ${label}: memcpy ${gbps(memcpy).toFixed(2)} GB/s   view ${gbps(view).toFixed(2)} GB/s   ` +
      `read ${gbps(read).toFixed(2)} GB/s   write ${gbps(write).toFixed(2)} GB/s`,
  );
  out[`memcpyGBps${label}`] = Number(gbps(memcpy).toFixed(3));
  out[`viewGBps${label}`] = Number(gbps(view).toFixed(3));
  out[`readGBps${label}`] = Number(gbps(read).toFixed(3));
  out[`writeGBps${label}`] = Number(gbps(write).toFixed(3));
  out[`viewVsMemcpy${label}`] = Number((memcpy / view).toFixed(3));
}
await space.unmapAll();
console.log(JSON.stringify(out));
