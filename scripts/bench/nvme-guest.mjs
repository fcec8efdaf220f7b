#!/usr/bin/env node
// Guest-side nvme benchmark: fio inside a real Linux guest (QEMU 11.1, TCG) against our nvme
// device (over -device vfio-user-pci with shared memfd guest RAM) and against QEMU's own emulated
// NVMe (-device nvme) on the SAME image file, same kernel, same initramfs, same guest RAM kind, in
// the same run.
//
// Our device runs as it is deployed: `vfu serve nvme --socket S --set disk=IMG ...` (bin/vfu.js)
// as its own process, started for each of our boots in its own session (detached: setsid, so the
// kernel's autogroup scheduling gives it its own group, as a separately started server has; QEMU is
// started in its own session by scripts/qemu/boot.mjs too), stopped with SIGTERM after the boot
// (SIGKILL after 10 s; every error path and our own exit kill it). From that process we read its
// CPU time (/proc/<pid>/stat, per fio job) and, at its exit, the device's counters (one info line,
// `nvme: counters {...}`, per boot). `--in-process` runs the old way instead: Server + devices/nvme
// in this process (through tsx), with the counters snapshotted per fio job.
//
// Per backend one boot runs three fio jobs on /dev/nvme0n1 (direct=1, libaio, time based):
//   4 KiB random read and 4 KiB random write at iodepth 16, 128 KiB sequential read at iodepth 16.
// A run is `--rounds` rounds (default 3) of one boot per backend, the order alternating (ours
// then QEMU, QEMU then ours, ...) so a change in the host's load falls on both; every figure is
// the median over the rounds, and the ratios (ours / QEMU) are those of the medians. Prints a
// table and, as the last line, one JSON object (ratios, medians, each round's ratios, figures
// and 1-minute load averages). For our device it also reports: MMIO doorbell writes
// (REGION_WRITE messages), shadow-doorbell timer polls and interrupts per command; how commands
// were found (a pump started by an MMIO doorbell, a completion pass or the poll timer);
// synchronous transfers; the mean service time (fetch to handler done), post time (handler done
// to CQE written) and turnaround (interrupt to the next command fetched: the guest's reaction plus
// our discovery delay), per boot (all three jobs, ramp and boot included; per job with
// --in-process); the server's CPU time per command and as a share of wall time (one core = 1; the
// libuv pool's threads included), per job: with its own process, from the end of fio's ramp to the
// job's result over fio's own I/O count (1 I/O = 1 command, MDTS is 128 KiB); in-process, over
// the whole job and the device's command count. And the scheduling autogroups of the benchmark,
// the server and QEMU.
//
//   npm run bench:nvme-guest [-- --runtime 5 --iodepth 16 --size 256M --smp 1 --rounds 3 --echo
//                               --syncio on|off --holdpoll on|off --in-process]
//
// Needs root (the QEMU chroot from scripts/qemu/setup-chroot.sh, which also installs fio there).
// fio and the shared libraries it links (ldd inside the chroot) are copied into the initramfs.

import { execFileSync, spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeSync,
} from "node:fs";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { bootGuest, buildInitramfs, setupChroot } from "../qemu/boot.mjs";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const inProcess = process.argv.includes("--in-process");

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
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const round2 = (x) => Math.round(x * 100) / 100;

// --- The server as its own process ---------------------------------------------------------------

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
/** A process's CPU time so far (user + system, all its threads) in µs, from /proc/<pid>/stat. */
function procCpuUs(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" "); // f[0] is field 3 (state)
  return ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK; // fields 14 utime, 15 stime
}
/** A process's scheduling autogroup ("/autogroup-N"), or null. */
function autogroupOf(pid) {
  try {
    return readFileSync(`/proc/${pid}/autogroup`, "utf8").split(" ")[0].trim();
  } catch {
    return null;
  }
}
/** Our QEMU: boot.mjs's child (unshare execs its way to qemu-system-*, keeping the pid). */
function qemuPid() {
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, "utf8");
      const comm = s.slice(s.indexOf("(") + 1, s.lastIndexOf(")"));
      const ppid = Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === process.pid && comm.startsWith("qemu")) return Number(d);
    } catch {}
  }
  return null;
}

/** Live server processes (each leads its own session and process group). */
const servers = new Set();
const killGroup = (child, signal) => {
  try {
    process.kill(-child.pid, signal);
  } catch {}
};
process.on("exit", () => {
  for (const c of servers) killGroup(c, "SIGKILL");
});

/**
 * `vfu serve nvme` in its own session; resolves once it listens on `socket`. On any failure the
 * process is killed before the error is thrown.
 */
async function startServer(socket, opts) {
  const args = [path.join(repo, "bin/vfu.js"), "serve", "nvme", "--socket", socket];
  for (const [k, v] of Object.entries(opts)) args.push("--set", `${k}=${v}`);
  // setpriv --pdeathsig: the server also dies if this process is killed without its exit hook
  // running (SIGKILL); it execs node, so the pid (and the session spawn's setsid made) stay.
  const child = spawn("setpriv", ["--pdeathsig", "TERM", process.execPath, ...args], {
    cwd: repo,
    detached: true,
    stdio: ["ignore", "ignore", "pipe"],
  });
  servers.add(child);
  const srv = { child, pid: child.pid, lines: [], counters: null, listening: false, exited: false };
  srv.closed = new Promise((resolve) => {
    child.on("error", (err) => {
      srv.lines.push(`spawn: ${err.message}`);
      srv.exited = true;
      servers.delete(child);
      resolve({ code: null, signal: null });
    });
    child.on("close", (code, signal) => {
      srv.exited = true;
      servers.delete(child);
      resolve({ code, signal });
    });
  });
  let partial = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d) => {
    partial += d;
    for (let i = partial.indexOf("\n"); i >= 0; i = partial.indexOf("\n")) {
      const line = partial.slice(0, i);
      partial = partial.slice(i + 1);
      srv.lines.push(line);
      if (srv.lines.length > 200) srv.lines.shift();
      const m = /nvme: counters (\{.*\})\s*$/.exec(line);
      if (m) srv.counters = JSON.parse(m[1]);
      if (/serving nvme on /.test(line)) srv.listening = true;
      if (echo || / (warn|error) /.test(line)) log(`[vfu] ${line}`);
    }
  });
  try {
    const t0 = performance.now();
    while (!(srv.listening && existsSync(socket))) {
      if (srv.exited) throw new Error("exited before listening");
      if (performance.now() - t0 > 30_000) throw new Error("not listening after 30 s");
      await sleep(20);
    }
  } catch (err) {
    await stopServer(srv, "SIGKILL");
    throw new Error(`vfu serve nvme: ${err.message}\n${srv.lines.join("\n")}`);
  }
  return srv;
}

/** SIGTERM to the server's group, wait for it to exit (SIGKILL after 10 s). */
async function stopServer(srv, signal = "SIGTERM") {
  if (!srv.exited) {
    killGroup(srv.child, signal);
    const timer = setTimeout(() => killGroup(srv.child, "SIGKILL"), 10_000);
    const r = await srv.closed;
    clearTimeout(timer);
    return r;
  }
  return srv.closed;
}

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
    readKiB: Number(f[5]),
    readKiBps: Number(f[6]),
    readIops: Number(f[7]),
    writeKiB: Number(f[46]),
    writeKiBps: Number(f[47]),
    writeIops: Number(f[48]),
  };
}

/** The device's counters per command (over a job's delta or a whole boot). */
function perCommandOf(d) {
  const cmds = d.commands;
  const per = (k) => round2(d[k] / cmds);
  return {
    commands: cmds,
    mmioPerCmd: per("mmioDoorbells"),
    pollsPerCmd: per("shadowPolls"),
    irqPerCmd: per("interrupts"),
    foundBy: { mmio: per("foundByMmio"), completion: per("foundByCompletion"), timer: per("foundByTimer") },
    syncPerCmd: per("syncTransfers"),
    slowSync: d.slowSyncTransfers,
    serviceUs: per("serviceUs"),
    postUs: per("postUs"),
    turnaroundUs: Math.round(d.turnaroundUs / d.turnarounds),
    cmdsPerTurnaround: d.turnarounds > 0 ? round2(cmds / d.turnarounds) : null,
  };
}

/**
 * One boot. `probe`: none (QEMU's device), { counters } (our server in this process: the device's
 * counters, snapshotted per job) or { pid } (our server as its own process: its CPU time per job).
 */
async function runGuest(name, o, probe) {
  const t0 = performance.now();
  const perJob = {};
  const groups = { bench: autogroupOf(process.pid) };
  let snap = null;
  const onLine = (line) => {
    if (!probe) {
      if (!groups.qemu && /VFU-LOG start-/.test(line)) groups.qemu = autogroupOf(qemuPid());
      return;
    }
    const start = /VFU-LOG start-(\w+)/.exec(line);
    const done = /VFU-RESULT fio-(\w+)/.exec(line);
    if (start && !groups.qemu) {
      groups.qemu = autogroupOf(qemuPid());
      groups.server = autogroupOf(probe.pid ?? process.pid);
    }
    if (start && probe.counters)
      snap = { ...probe.counters(), cpu: process.cpuUsage(), t: performance.now() };
    if (start && probe.pid) {
      // CPU from the end of fio's ramp (1 s) to the job's result, over fio's I/O count.
      const s = { ramped: null };
      snap = s;
      setTimeout(() => {
        if (snap === s) s.ramped = { cpu: procCpuUs(probe.pid), t: performance.now() };
      }, 1000);
    }
    if (done && snap && probe.counters) {
      const now = probe.counters();
      const d = {};
      for (const k of Object.keys(now)) d[k] = now[k] - snap[k];
      const cpu = process.cpuUsage(snap.cpu);
      const cpuUs = cpu.user + cpu.system;
      perJob[done[1]] = {
        ...perCommandOf(d),
        serverCpuUsPerCmd: Math.round(cpuUs / d.commands),
        serverCpuShare: round2(cpuUs / 1000 / (performance.now() - snap.t)),
      };
    }
    if (done && snap?.ramped && probe.pid) {
      perJob[done[1]] = {
        cpuUs: procCpuUs(probe.pid) - snap.ramped.cpu,
        ms: performance.now() - snap.ramped.t,
      };
    }
    if (done) snap = null;
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
  if (probe?.pid) {
    const bsKiB = { randread: 4, randwrite: 4, seqread: 128 };
    for (const [key, j] of Object.entries(perJob)) {
      const ios = (res[key].readKiB + res[key].writeKiB) / bsKiB[key];
      perJob[key] = {
        fioIos: ios,
        serverCpuUsPerCmd: Math.round(j.cpuUs / ios),
        serverCpuShare: round2(j.cpuUs / 1000 / j.ms),
      };
    }
  }
  const bad = r.lines.filter((l) => /VFU-DMESG/.test(l));
  if (bad.length) log(`${name}: guest kernel said:\n${bad.join("\n")}`);
  log(
    `${name}: model ${r.results.model}, ${r.results.queues} I/O queue(s), scheduler ${r.results.sched}; boot + fio ${secs} s; autogroups ${JSON.stringify(groups)}`,
  );
  if (probe)
    log(
      `${name}: per command (${probe.pid ? "ramp excluded" : "including 1 s ramp"}): ${JSON.stringify(perJob)}`,
    );
  return {
    ...(probe ? { perCommand: perJob } : {}),
    model: r.results.model,
    load,
    autogroups: groups,
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

  // Ours. By default `vfu serve nvme` as its own process, a fresh one per boot (its counters, logged
  // at exit, are then that boot's); with --in-process one Server in this process for all rounds.
  const deviceOptions = { disk, size, syncio, holdpoll };
  let device;
  if (inProcess) {
    const { register } = await import("tsx/esm/api");
    register();
    const { nvme } = await import("../../devices/nvme/index.ts");
    const { PciDevice, Server, stderrLogger } = await import("../../src/index.ts");
    const logger = stderrLogger("warn", "[nvme] ");
    server = new Server({ log: logger });
    server.listen(
      (dma, devLog) => {
        device = new PciDevice(nvme, { dma, log: devLog, options: deviceOptions });
        return device;
      },
      { socketPath: path.join(work, "nvme.sock"), log: logger },
    );
  }
  const bootOurs = (round, socket, probe) =>
    runGuest(
      `ours #${round}`,
      { chroot, initramfs: built.initramfs, sockets: [{ path: socket, props: { "x-msg-timeout": 20000 } }] },
      probe,
    );
  const runOurs = async (round) => {
    if (inProcess) {
      return bootOurs(round, path.join(work, "nvme.sock"), {
        counters: () => {
          const c = device.behaviour.controller;
          const { syncTransfers, slowSyncTransfers } = c.ns.stats;
          return { ...c.counters, syncTransfers, slowSyncTransfers };
        },
      });
    }
    const socket = path.join(work, `nvme-${round}.sock`);
    const srv = await startServer(socket, deviceOptions);
    let result;
    try {
      result = await bootOurs(round, socket, { pid: srv.pid });
    } finally {
      await stopServer(srv);
    }
    const exit = await srv.closed;
    if (exit.code !== 0 || !srv.counters) {
      throw new Error(
        `ours #${round}: vfu serve exited with ${exit.code ?? exit.signal}, counters ${srv.counters ? "logged" : "not logged"}\n${srv.lines.join("\n")}`,
      );
    }
    const boot = perCommandOf(srv.counters);
    log(`ours #${round}: server counters per command over the boot: ${JSON.stringify(boot)}`);
    result.perCommand.boot = boot;
    return result;
  };

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
  if (server) await server.close();
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
      server: inProcess ? "in-process" : "own process (vfu serve)",
      autogroups: oursRuns.map((o, i) => ({ ours: o.autogroups, qemu: qemuRuns[i].autogroups })),
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
