// nvme benchmark: 4 KiB reads and writes per second at queue depth 1 and 32, driven by the
// TypeScript client's host driver (test/devices/nvme-host.ts) over the in-memory connection, the
// server in this process, queues and buffers in one shared memfd. Each case runs for DURATION
// ms, once with MMIO doorbells only (every tail/head update a trapped REGION_WRITE) and once with
// shadow doorbells (Doorbell Buffer Config + event indices, MMIO only when the event index asks).
//
//   npm run bench:nvme [-- --ms 1500]
import { Layout, NvmeHost } from "../../test/devices/nvme-host.ts";

const ms = Number(process.argv[process.argv.indexOf("--ms") + 1]) || 1500;

async function run(h: NvmeHost, write: boolean, qd: number): Promise<{ iops: number; mmioPerIo: number }> {
  const blocks = 8; // 4 KiB of 512-byte blocks
  const span = 16384; // 8 MiB of the 16 MiB image
  const mmio0 = h.mmioDoorbells;
  let done = 0;
  let i = 0;
  const end = performance.now() + ms;
  const start = performance.now();
  await new Promise<void>((resolve, reject) => {
    let active = 0;
    const next = (): void => {
      if (performance.now() >= end) {
        if (active === 0) resolve();
        return;
      }
      const slot = i++ % qd;
      const lba = ((i * 7919) % (span / blocks)) * blocks;
      active++;
      h.rw(1, write, lba, blocks, Layout.DATA + slot * 4096).then((c) => {
        active--;
        if (c.status !== 0) return reject(new Error(`status 0x${c.status.toString(16)}`));
        done++;
        next();
      }, reject);
    };
    for (let k = 0; k < qd; k++) next();
  });
  const secs = (performance.now() - start) / 1000;
  return { iops: Math.round(done / secs), mmioPerIo: (h.mmioDoorbells - mmio0) / done };
}

const rows: string[] = [];
const figures: Record<string, number> = {};
for (const shadow of [false, true]) {
  const h = await NvmeHost.start({ size: "16M" });
  await h.enable();
  await h.createQueues(1, 64);
  if (shadow && (await h.dbbuf()).status !== 0) throw new Error("Doorbell Buffer Config failed");
  for (const write of [false, true]) {
    for (const qd of [1, 32]) {
      const r = await run(h, write, qd);
      figures[`nvme${shadow ? "Shadow" : "Mmio"}${write ? "Write" : "Read"}Qd${qd}Iops`] = r.iops;
      rows.push(
        `| ${shadow ? "shadow" : "MMIO"} | ${write ? "write" : "read"} | ${qd} | ${r.iops} | ${r.mmioPerIo.toFixed(2)} |`,
      );
      console.error(rows[rows.length - 1]);
    }
  }
  const c = h.device.behaviour.controller.counters;
  console.error(
    `  device: ${c.mmioDoorbells} MMIO doorbells, ${c.shadowPolls} shadow polls, ${c.commands} commands`,
  );
  await h.stop();
  h.cleanup();
}
console.log(
  [
    "| doorbells | op | QD | IOPS (4 KiB) | MMIO writes per I/O |",
    "| --- | --- | --- | --- | --- |",
    ...rows,
  ].join("\n"),
);
console.log(JSON.stringify(figures));
