#!/usr/bin/env node
// Guest-side nvme benchmark: fio inside a real Linux guest (QEMU 11.1, TCG) against our nvme
// device (Server + devices/nvme in this process, loaded through tsx, over -device vfio-user-pci
// with shared memfd guest RAM) and against QEMU's own emulated NVMe (-device nvme) on the SAME
// image file, same kernel, same initramfs, same guest RAM kind, in the same run.
//
// Per backend one boot runs three fio jobs on /dev/nvme0n1 (direct=1, libaio, time based):
//   4 KiB random read and 4 KiB random write at iodepth 16, 128 KiB sequential read at iodepth 16.
// A run is `--rounds` rounds (default 3) of one boot per backend, the order alternating (ours
// then QEMU, QEMU then ours, ...) so a change in the host's load falls on both; every figure is
// the median over the rounds, and the ratios (ours / QEMU) are those of the medians. Prints a
// table and, as the last line, one JSON object (ratios, medians, each round's ratios, figures
// and 1-minute load averages). For our device it also reports, per job and round: MMIO doorbell
// writes (REGION_WRITE messages), shadow-doorbell timer polls and interrupts per command; how
// commands were found (a pump started by an MMIO doorbell, a completion pass or the poll
// timer); synchronous transfers; the mean service time (fetch to handler done), post time
// (handler done to CQE written) and turnaround (interrupt to the next command fetched: the
// guest's reaction plus our discovery delay); this process's CPU time per command and as a
// share of wall time (one core = 1; the libuv pool's threads included).
//
//   npm run bench:nvme-guest [-- --runtime 5 --iodepth 16 --size 256M --smp 1 --rounds 3 --echo
//                               --syncio on|off --holdpoll on|off]
//
// Needs root (the QEMU chroot from scripts/qemu/setup-chroot.sh, which also installs fio there).
// fio and the shared libraries it links (ldd inside the chroot) are copied into the initramfs.

import { execFileSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  writeSync,
} from "node:fs";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { register } from "tsx/esm/api";
import { bootGuest, buildInitramfs, setupChroot } from "../qemu/boot.mjs";

register();
const { nvme, nvmeOf } = await import("../../devices/nvme/index.ts");
const { PciDevice, Server, stderrLogger } = await import("../../src/index.ts");

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}
const runtime = Number(arg("runtime", "5"));
const iodepth = Number(arg("iodepth", "16"));
const size = arg("size", "256M");
const smp = Number(arg("smp", "1"));
const echo = process.argv.includes("--echo");
const syncio = arg("syncio", "on");
const holdpoll = arg("holdpoll", "on");
const rounds = Number(arg("rounds", "3"));
const sizeBytes = Number.parseInt(size, 10) * 1024 * 1024;
if (!/^\d+M$/.test(size)) throw new Error("--size takes a number of MiB, e.g. 256M");

const log = (s) => process.stderr.write(`[nvme-guest] ${s}\n`);

// The three jobs: [key, fio arguments]. Each is preceded by 1 s of ramp time (not measured).
const JOBS = [
  ["randread", `--rw=randread --bs=4k --iodepth=${iodepth}`],
  ["randwrite", `--rw=randwrite --bs=4k --iodepth=${iodepth}`],
  ["seqread", `--rw=read --bs=128k --iodepth=${iodepth}`],
];

// Guest /init: wait for the disk, report which controller it is, run the jobs with terse
// output (v3: field 7/8 read KiB/s and IOPS, 48/49 write KiB/s and IOPS).
const INIT = `#!/bin/sh
. /lib/vfu/prelude.sh
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu/ceph
vfu_wait_for /dev/nvme0n1 60 || { vfu_dmesg nvme; vfu_result disk none; vfu_end; }
vfu_result model "$(cat /sys/class/nvme/nvme0/model | tr -d ' ')"
vfu_result queues "$(ls /sys/block/nvme0n1/mq | wc -l)"
vfu_result sched "$(cat /sys/block/nvme0n1/queue/scheduler)"
fio --version >/dev/null 2>&1 || { vfu_result fio "$(fio --version 2>&1 | head -n1)"; vfu_end; }
common="--filename=/dev/nvme0n1 --direct=1 --ioengine=libaio --thread --time_based --runtime=${runtime} --ramp_time=1 --size=${size} --randrepeat=0 --norandommap --output-format=terse"
${JOBS.map(
  ([key, args]) =>
    `vfu_log start-${key}\nout=$(fio --name=${key} $common ${args} 2>&1 | tail -n1)\nvfu_result fio-${key} "$out"`,
).join("\n")}
vfu_dmesg 'I/O error|timeout|WARNING|RIP:|Oops|BUG:'
vfu_end
`;

/** fio and its shared libraries, as buildInitramfs files (paths as ldd prints them). */
function fioFiles(chroot) {
  const out = execFileSync("chroot", [chroot, "/usr/bin/ldd", "/usr/bin/fio"], { encoding: "utf8" });
  const libs = [...out.matchAll(/(\/\S+) \(0x/g)].map((m) => m[1]);
  const files = [{ dest: "/usr/bin/fio", src: path.join(chroot, "usr/bin/fio"), mode: 0o755 }];
  for (const lib of libs) {
    const real = execFileSync("chroot", [chroot, "/usr/bin/readlink", "-f", lib], {
      encoding: "utf8",
    }).trim();
    files.push({ dest: lib, src: path.join(chroot, real), mode: 0o755 });
  }
  return files;
}

function parseTerse(line) {
  const f = (line ?? "").split(";");
  if (f.length < 50 || f[0] !== "3") return null;
  return {
    readKiBps: Number(f[6]),
    readIops: Number(f[7]),
    writeKiBps: Number(f[47]),
    writeIops: Number(f[48]),
  };
}

async function runGuest(name, o, counters) {
  const t0 = performance.now();
  const perJob = {};
  let snap = null;
  const onLine = (line) => {
    if (!counters) return;
    const start = /VFU-LOG start-(\w+)/.exec(line);
    const done = /VFU-RESULT fio-(\w+)/.exec(line);
    if (start) snap = { ...counters(), cpu: process.cpuUsage(), t: performance.now() };
    if (done && snap) {
      const now = counters();
      const cmds = now.commands - snap.commands;
      const per = (k) => Math.round(((now[k] - snap[k]) / cmds) * 100) / 100;
      const cpu = process.cpuUsage(snap.cpu);
      const cpuUs = cpu.user + cpu.system;
      perJob[done[1]] = {
        commands: cmds,
        mmioPerCmd: per("mmioDoorbells"),
        pollsPerCmd: per("shadowPolls"),
        irqPerCmd: per("interrupts"),
        serverCpuUsPerCmd: Math.round(cpuUs / cmds),
        serverCpuShare: Math.round((cpuUs / 1000 / (performance.now() - snap.t)) * 100) / 100,
        foundBy: {
          mmio: per("foundByMmio"),
          completion: per("foundByCompletion"),
          timer: per("foundByTimer"),
        },
        syncPerCmd: per("syncTransfers"),
        slowSync: now.slowSync - snap.slowSync,
        serviceUs: per("serviceUs"),
        postUs: per("postUs"),
        turnaroundUs: Math.round(
          (now.turnaroundUs - snap.turnaroundUs) / (now.turnarounds - snap.turnarounds),
        ),
        cmdsPerTurnaround: per("turnarounds") > 0 ? Math.round(100 / per("turnarounds")) / 100 : null,
      };
    }
  };
  const load1 = loadavg()[0];
  const r = await bootGuest({ ...o, memory: "1G", smp, ram: "memfd", timeoutMs: 240_000, echo, onLine });
  // The 1-minute load average before and after (2 shared cores: other work changes the figures).
  const load = [load1, loadavg()[0]].map((x) => Math.round(x * 10) / 10);
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  if (!r.ended || r.timedOut || r.panicked) {
    throw new Error(
      `${name}: guest did not finish (timedOut ${r.timedOut}, panicked ${r.panicked}, exit ${r.exitCode})\n` +
        `${r.lines.slice(-30).join("\n")}\n${r.stderr}`,
    );
  }
  const res = {};
  for (const [key] of JOBS) {
    const t = parseTerse(r.results[`fio-${key}`]);
    if (!t) throw new Error(`${name}: fio ${key} printed: ${r.results[`fio-${key}`]}`);
    res[key] = t;
  }
  const bad = r.lines.filter((l) => /VFU-DMESG/.test(l));
  if (bad.length) log(`${name}: guest kernel said:\n${bad.join("\n")}`);
  log(
    `${name}: model ${r.results.model}, ${r.results.queues} I/O queue(s), scheduler ${r.results.sched}; boot + fio ${secs} s`,
  );
  if (counters) log(`${name}: per command (including 1 s ramp): ${JSON.stringify(perJob)}`);
  return {
    ...(counters ? { perCommand: perJob } : {}),
    model: r.results.model,
    load,
    randReadIops: res.randread.readIops,
    randWriteIops: res.randwrite.writeIops,
    seqReadMBps: Math.round((res.seqread.readKiBps * 1024) / 1e6),
  };
}

const chroot = await setupChroot({ quiet: true });
if (!existsSync(path.join(chroot, "usr/bin/fio"))) throw new Error(`no fio in ${chroot}`);
// The image lives inside the chroot so QEMU (chrooted) and our server (on the host) open the
// same file: /var/tmp/<dir>/disk.img in the chroot is <chroot>/var/tmp/<dir>/disk.img here.
mkdirSync(path.join(chroot, "var/tmp"), { recursive: true });
const imgDir = mkdtempSync(path.join(chroot, "var/tmp", "vfu-bench-nvme-"));
const work = mkdtempSync(path.join(tmpdir(), "vfu-bench-nvme-"));
let server;
const cleanup = () => {
  rmSync(work, { recursive: true, force: true });
  rmSync(imgDir, { recursive: true, force: true });
};
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}
try {
  const disk = path.join(imgDir, "disk.img");
  const diskInChroot = `/${path.relative(chroot, disk)}`;
  // Fill the image (not sparse): reads then hit real page-cache pages for both backends.
  const fd = openSync(disk, "w");
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 131 + 7) & 0xff;
  for (let off = 0; off < sizeBytes; off += chunk.length) writeSync(fd, chunk, 0, chunk.length, off);
  // Written back before the first round: otherwise the kernel flushes the fresh 256 MiB during
  // round 1 and writes meeting pages under writeback wait (measured: 9 of our synchronous writes
  // over 2 ms in round 1's randwrite, none in rounds 2-3).
  fsyncSync(fd);
  closeSync(fd);

  const built = buildInitramfs({
    chroot,
    out: path.join(work, "initramfs.cpio.gz"),
    initText: INIT,
    modules: ["nvme"],
    files: fioFiles(chroot),
  });
  log(
    `initramfs ${(built.bytes / 1e6).toFixed(1)} MB in ${built.ms} ms; fio ${runtime} s per job, iodepth ${iodepth}, image ${size}, guest smp ${smp}`,
  );

  // Ours: the vfio-user server in this process (QEMU and fio run in the guest's process).
  const socket = path.join(work, "nvme.sock");
  const logger = stderrLogger("warn", "[nvme] ");
  server = new Server({ log: logger });
  let device;
  server.listen(
    (dma, devLog) => {
      device = new PciDevice(nvme, { dma, log: devLog, options: { disk, size, syncio, holdpoll } });
      return device;
    },
    { socketPath: socket, log: logger },
  );
  const runOurs = (round) =>
    runGuest(
      `ours #${round}`,
      { chroot, initramfs: built.initramfs, sockets: [{ path: socket, props: { "x-msg-timeout": 20000 } }] },
      () => {
        const c = nvmeOf(device);
        return {
          ...c.counters,
          syncTransfers: c.ns.stats.syncTransfers,
          slowSync: c.ns.stats.slowSyncTransfers,
        };
      },
    );

  // QEMU's emulated NVMe on the same file. cache=writeback (QEMU's default): our device goes
  // through the host page cache too (node:fs, no O_DIRECT), so both see the same host I/O path.
  const runQemu = (round) =>
    runGuest(`qemu #${round}`, {
      chroot,
      initramfs: built.initramfs,
      qemuArgs: [
        "-drive",
        `file=${diskInChroot},if=none,id=d0,format=raw,cache=writeback`,
        "-device",
        "nvme,drive=d0,serial=vfubench",
      ],
    });

  // Rounds alternate the order (ours first, then QEMU first, ...) so that a change in the host's
  // load during the run falls on both; each figure is the median over the rounds.
  const oursRuns = [];
  const qemuRuns = [];
  for (let r = 1; r <= rounds; r++) {
    if (r % 2 === 1) {
      oursRuns.push(await runOurs(r));
      qemuRuns.push(await runQemu(r));
    } else {
      qemuRuns.push(await runQemu(r));
      oursRuns.push(await runOurs(r));
    }
  }
  await server.close();
  server = undefined;
  const median = (xs) => {
    const v = [...xs].sort((a, b) => a - b);
    const m = v.length >> 1;
    return v.length % 2 ? v[m] : Math.round((v[m - 1] + v[m]) / 2);
  };
  const summary = (runs) => ({
    model: runs[0].model,
    randReadIops: median(runs.map((x) => x.randReadIops)),
    randWriteIops: median(runs.map((x) => x.randWriteIops)),
    seqReadMBps: median(runs.map((x) => x.seqReadMBps)),
  });
  const ours = summary(oursRuns);
  const qemu = summary(qemuRuns);

  const ratio = (a, b) => Math.round((a / b) * 1000) / 1000;
  const rows = [
    ["4 KiB randread IOPS", ours.randReadIops, qemu.randReadIops],
    ["4 KiB randwrite IOPS", ours.randWriteIops, qemu.randWriteIops],
    ["128 KiB seqread MB/s", ours.seqReadMBps, qemu.seqReadMBps],
  ];
  console.log(`| fio (QD ${iodepth}, ${runtime} s) | ours | QEMU nvme | ours/QEMU |`);
  console.log("| --- | --- | --- | --- |");
  for (const [k, a, b] of rows) console.log(`| ${k} | ${a} | ${b} | ${ratio(a, b)} |`);
  console.log(
    JSON.stringify({
      randReadIopsVsQemu: ratio(ours.randReadIops, qemu.randReadIops),
      randWriteIopsVsQemu: ratio(ours.randWriteIops, qemu.randWriteIops),
      seqReadMBpsVsQemu: ratio(ours.seqReadMBps, qemu.seqReadMBps),
      ours,
      qemu,
      rounds: oursRuns.map((o, i) => ({
        randRead: ratio(o.randReadIops, qemuRuns[i].randReadIops),
        randWrite: ratio(o.randWriteIops, qemuRuns[i].randWriteIops),
        seqRead: ratio(o.seqReadMBps, qemuRuns[i].seqReadMBps),
        ours: [o.randReadIops, o.randWriteIops, o.seqReadMBps],
        qemu: [qemuRuns[i].randReadIops, qemuRuns[i].randWriteIops, qemuRuns[i].seqReadMBps],
        load: [o.load, qemuRuns[i].load],
      })),
      perCommand: oursRuns.map((o) => o.perCommand),
      runtimeSec: runtime,
      iodepth,
      image: size,
      smp,
    }),
  );
} finally {
  if (server) await server.close();
  cleanup();
}
