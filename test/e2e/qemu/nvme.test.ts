// nvme served from this test process to a real QEMU 11.1 and driven by the guest's own Linux nvme
// driver, once with shared memfd guest RAM and once with plain anonymous RAM (every DMA a
// DMA_READ/DMA_WRITE message). One server serves several boots of the same guest, on one image:
// 1. "write": the driver binds, /dev/nvme0n1 has the configured size and LBA size, the guest
//    writes a known pattern with O_DIRECT dd at 1 MiB and reads it back with O_DIRECT;
// 2. "reboot" (memfd only): reads the pattern, starts O_DIRECT writes elsewhere and `reboot -f`s
//    in the middle of them (QEMU runs with -no-reboot, so the VM ends and the client disconnects);
// 3. "read": a fresh boot binds again and reads the same pattern back.
// Afterwards the image file holds the pattern at 1 MiB.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { type NvmeBehaviour, nvme } from "../../../devices/nvme/index.ts";
import { bootGuest, buildInitramfs, setupChroot } from "../../../scripts/qemu/boot.mjs";
import { MemorySink, PciDevice, Server, SinkLogger } from "../../../src/index.ts";

const PATTERN_BYTES = 64 * 1024;
const PATTERN_OFFSET = 1 << 20;

function pattern(): Buffer {
  const b = Buffer.alloc(PATTERN_BYTES);
  for (let i = 0; i < b.length; i++) b[i] = (i * 31 + (i >> 12) * 7 + 0x5a) & 0xff;
  return b;
}

// The guest's /init (busybox sh; `\$` is an escape of this template literal).
const INIT = `#!/bin/sh
. /lib/vfu/prelude.sh
mode=$(sed -n 's/.*vfu_mode=\\([a-z]*\\).*/\\1/p' /proc/cmdline)
vfu_result mode "$mode"
slot=$(vfu_pci_find 1234 4e56)
[ -n "$slot" ] || { vfu_result slot none; vfu_end; }
vfu_pci_line "/sys/bus/pci/devices/$slot"
vfu_wait_for /dev/nvme0n1 30 || { vfu_dmesg nvme; vfu_result disk none; vfu_end; }
vfu_result driver "$(vfu_pci_driver "$slot")"
vfu_result size "$(cat /sys/block/nvme0n1/size)"
vfu_result lbs "$(cat /sys/block/nvme0n1/queue/logical_block_size)"
vfu_result model "$(cat /sys/class/nvme/nvme0/model | tr -d ' ')"
vfu_result queues "$(ls /sys/block/nvme0n1/mq | wc -l)"
readback() {
  dd if=/dev/nvme0n1 of=/tmp/back.bin bs=4096 skip=256 count=16 iflag=direct 2>/dev/null
  if cmp -s /tmp/back.bin /pattern.bin; then vfu_result "$1" ok; else vfu_result "$1" "fail $(md5sum </tmp/back.bin)"; fi
}
case "$mode" in
write)
  if dd if=/pattern.bin of=/dev/nvme0n1 bs=4096 seek=256 oflag=direct conv=fsync 2>/dev/null; then vfu_result dd ok; else vfu_result dd fail; fi
  readback readback
  ;;
reboot)
  readback readback
  (i=0; while true; do dd if=/pattern.bin of=/dev/nvme0n1 bs=4096 seek=$((4096 + (i % 64) * 16)) oflag=direct 2>/dev/null; i=$((i + 1)); done) &
  usleep 300000
  vfu_result rebooting yes
  echo "VFU-END"
  reboot -f
  ;;
read)
  readback readback
  ;;
esac
vfu_dmesg 'nvme|I/O error|timeout|WARNING|RIP:|Oops|BUG:'
vfu_result uptime "$(cut -d' ' -f1 /proc/uptime)"
vfu_end
`;

if (process.env.VFU_SKIP_QEMU === "1") {
  t.skip("QEMU end-to-end tests: skipped because VFU_SKIP_QEMU=1", () => {});
} else {
  const work = mkdtempSync(path.join(tmpdir(), "vfu-e2e-nvme-"));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  let chroot = "";
  let initramfs = "";

  t.before(async () => {
    chroot = await setupChroot({ quiet: true });
    const built = buildInitramfs({
      chroot,
      out: path.join(work, "nvme.cpio.gz"),
      initText: INIT,
      modules: ["nvme"],
      files: [{ data: pattern(), dest: "/pattern.bin" }],
    });
    initramfs = built.initramfs;
    t.comment(`initramfs: ${built.ms} ms, modules ${built.modules.join(" ")}`);
  });

  const cases = [
    { ram: "memfd", size: "64M", lba: "512", modes: ["write", "reboot", "read"] },
    { ram: "anon", size: "32M", lba: "4096", modes: ["write", "read"] },
  ] as const;
  for (const k of cases) {
    t.test(
      `the guest's nvme driver writes and reads through nvme (${k.ram} RAM, lba ${k.lba})`,
      async (t) => {
        const dir = mkdtempSync(path.join(work, `${k.ram}-`));
        const socketPath = path.join(dir, "nvme.sock");
        const disk = path.join(dir, "disk.img");
        const logs = new MemorySink();
        const log = new SinkLogger(logs, "info");
        const server = new Server({ log });
        let device: PciDevice<NvmeBehaviour> | undefined;
        server.listen(
          (dma, devLog) => {
            device = new PciDevice(nvme, { dma, log: devLog, options: { disk, size: k.size, lba: k.lba } });
            return device;
          },
          { socketPath, log: log.child("[nvme]") },
        );
        let closed = false;
        t.teardown(async () => {
          if (!closed) await server.close();
        });
        const blocks512 = String(Number.parseInt(k.size, 10) * 2048);
        for (const mode of k.modes) {
          const r = await bootGuest({
            chroot,
            initramfs,
            sockets: [{ path: socketPath, props: { "x-msg-timeout": 20000 } }],
            ram: k.ram,
            extraAppend: `vfu_mode=${mode}`,
            timeoutMs: 90_000,
          });
          const vfu = r.lines.filter((l) => /VFU-(RESULT|PCI|LOG|DMESG)/.test(l));
          const context = { consoleTail: r.lines.slice(-40).join("\n"), qemuStderr: r.stderr };
          t.equal(r.timedOut, false, `${mode}: QEMU did not time out`, context);
          t.equal(r.panicked, false, `${mode}: no kernel panic`);
          t.equal(r.ended, true, `${mode}: VFU-END seen`, context);
          t.equal(r.results.mode, mode);
          t.equal(r.results.driver, "nvme", `${mode}: the nvme driver is bound`, context);
          t.equal(
            r.results.size,
            blocks512,
            `${mode}: /sys/block/nvme0n1/size is ${k.size} in 512-byte sectors`,
          );
          t.equal(r.results.lbs, k.lba, `${mode}: logical_block_size ${k.lba}`);
          t.equal(r.results.readback, "ok", `${mode}: the pattern reads back with O_DIRECT`, context);
          if (mode === "write") t.equal(r.results.dd, "ok", "O_DIRECT dd of the pattern");
          if (mode === "reboot") t.equal(r.results.rebooting, "yes", "reboot -f mid-I/O");
          t.notOk(
            r.lines.some((l) => /I\/O error|Oops|BUG:|RIP:/.test(l)),
            `${mode}: no I/O error or oops`,
          );
          t.comment(`${k.ram} ${mode}: ${r.durationMs} ms; guest lines:\n${vfu.join("\n")}`);
        }
        const c = device!.behaviour.controller;
        t.comment(
          `${k.ram}: counters ${JSON.stringify(c.counters)}, namespace ${JSON.stringify(c.ns.stats)}`,
        );
        closed = true;
        await server.close();
        const image = readFileSync(disk);
        t.equal(image.length, Number.parseInt(k.size, 10) << 20, "image sized by --set size=");
        t.ok(
          image.subarray(PATTERN_OFFSET, PATTERN_OFFSET + PATTERN_BYTES).equals(pattern()),
          "the image file holds the pattern at 1 MiB",
        );
      },
    );
  }
}
