#!/usr/bin/env node
// The mmap-vs-posted-writes trade-off of devices/bochs-display, measured in a real guest (QEMU
// 11.1, TCG). QEMU's vfio-user client posts trapped MMIO writes (no reply awaited; coalesced
// into REGION_WRITE_MULTI once more than 1024 are queued) only when no region of the device is
// mmap-capable. So one boot per setting of the device's `mmap` option, same kernel, same
// initramfs, the same static guest program (scripts/qemu/guest/mmio-writes.c):
//   seq   N 16-bit stores to a BAR2 register (DISPI BANK; always trapped), then one read back
//   fill  B bytes of 32-bit stores into BAR0 (the framebuffer: guest memory when mmapped,
//         trapped otherwise), then one read back
// Each is timed in the guest (CLOCK_MONOTONIC; the final read makes every store reach the device
// before the clock stops). The server runs in this process; messages are counted by command from
// its verbose log (a string per message: a small cost, the same in both runs).
// Prints a table and, as the last line, one JSON object.
//
//   npm run bench:bochs-guest [-- --stores 5000 --fill 262144 --echo]
//
// Needs root (the QEMU chroot from scripts/qemu/setup-chroot.sh) and gcc with a static libc.

import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { register } from "tsx/esm/api";
import { bootGuest, buildInitramfs, setupChroot } from "../qemu/boot.mjs";
import { bochsInit, buildMmioWrites, parseMmioWrites } from "../qemu/guest/bochs.mjs";

register();
const { bochsDisplay } = await import("../../devices/bochs-display/index.ts");
const { PciDevice, Server, SinkLogger } = await import("../../src/index.ts");

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}
const stores = Number(arg("stores", "5000"));
const fillBytes = Number(arg("fill", String(256 * 1024)));
const echo = process.argv.includes("--echo");
if (!Number.isInteger(stores) || stores < 1 || stores > 65535) throw new Error("--stores takes 1-65535");
if (!Number.isInteger(fillBytes) || fillBytes < 4 || fillBytes % 4 || fillBytes > 16 * 2 ** 20)
  throw new Error("--fill takes a multiple of 4 up to 16 MiB");

const log = (s) => process.stderr.write(`[bochs-guest] ${s}\n`);

/** Counts messages by command from the server's verbose log. */
function countingSink() {
  const counts = {};
  return {
    counts,
    write(level, line) {
      const m = /(?:^| )<- ([A-Z_]+) id=/.exec(line);
      if (m) counts[m[1]] = (counts[m[1]] ?? 0) + 1;
      else if (level === "warn" || level === "error") log(line);
    },
  };
}

async function run(name, mmap, chroot, initramfs, work) {
  const socketPath = path.join(work, `${name}.sock`);
  const sink = countingSink();
  const logger = new SinkLogger(sink, "debug");
  const server = new Server({ log: logger });
  server.listen((dma, devLog) => new PciDevice(bochsDisplay, { dma, log: devLog, options: { mmap } }), {
    socketPath,
    log: logger,
    verbose: true,
  });
  const load = loadavg()[0];
  try {
    const r = await bootGuest({ chroot, initramfs, sockets: [socketPath], timeoutMs: 600_000, echo });
    if (!r.ended) throw new Error(`${name}: the guest did not finish:\n${r.lines.slice(-30).join("\n")}`);
    const seq = parseMmioWrites(r.results.seq);
    const fill = parseMmioWrites(r.results.fill);
    if (!seq || !fill) throw new Error(`${name}: no figures: seq=${r.results.seq} fill=${r.results.fill}`);
    return {
      mmap,
      seqStores: seq.stores,
      seqMs: Math.round(seq.ns / 1e4) / 100,
      seqUsPerStore: Math.round(seq.nsPerStore / 10) / 100,
      fillBytes,
      fillMs: Math.round(fill.ns / 1e4) / 100,
      fillMBps: Math.round((fillBytes / (fill.ns / 1e9) / 1e6) * 100) / 100,
      messages: sink.counts,
      bootMs: r.durationMs,
      load1: Math.round(load * 100) / 100,
    };
  } finally {
    await server.close();
  }
}

const chroot = await setupChroot({ quiet: true });
const work = mkdtempSync(path.join(tmpdir(), "vfu-bench-bochs-"));
try {
  const program = buildMmioWrites(work);
  const built = buildInitramfs({
    chroot,
    out: path.join(work, "initramfs.cpio.gz"),
    initText: bochsInit({ seqCount: stores, fillBytes, console: false }),
    files: [{ src: program, dest: "bin/mmio-writes", mode: 0o755 }],
  });
  log(`${stores} register stores, ${fillBytes} bytes of framebuffer fill, one boot per setting`);
  const on = await run("mmap-on", "on", chroot, built.initramfs, work);
  log(`mmap=on: ${JSON.stringify(on)}`);
  const off = await run("mmap-off", "off", chroot, built.initramfs, work);
  log(`mmap=off: ${JSON.stringify(off)}`);
  console.log(
    "| bochs-display BAR0 | BAR2 stores (us each) | BAR0 fill (MB/s) | REGION_WRITE | REGION_WRITE_MULTI |",
  );
  console.log("| --- | --- | --- | --- | --- |");
  for (const x of [on, off])
    console.log(
      `| mmap=${x.mmap} | ${x.seqUsPerStore} | ${x.fillMBps} | ${x.messages.REGION_WRITE ?? 0} | ${x.messages.REGION_WRITE_MULTI ?? 0} |`,
    );
  console.log(
    JSON.stringify({
      registerStoreSpeedupWithoutMmap: Math.round((on.seqUsPerStore / off.seqUsPerStore) * 10) / 10,
      framebufferSpeedupWithMmap: Math.round((on.fillMBps / off.fillMBps) * 10) / 10,
      on,
      off,
      stores,
      fillBytes,
    }),
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
