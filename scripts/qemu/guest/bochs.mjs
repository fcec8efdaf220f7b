// Guest pieces shared by the bochs-display QEMU test (test/e2e/qemu/bochs-display.test.ts) and the
// mmap-vs-posted-writes benchmark (scripts/bench/bochs-guest.mjs): the static MMIO store loop
// built on the host, and the guest /init that times it and, optionally, loads the bochs driver
// and writes known text to the framebuffer console.

import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const MMIO_WRITES_SOURCE = path.join(here, "mmio-writes.c");

/** DISPI BANK (BAR2 + 0x50A): a register whose writes have no visible effect. */
export const SEQ_OFFSET = 0x50a;

/** What the guest prints on the console, row by row (rows of 8x16 cells, 80 columns at 640). */
export const CONSOLE_TEXT = {
  title: "VFU-BOCHS-CONSOLE-TEST", // row 0, columns 0-21
  xs: { row: 2, column: 10, count: 10 }, // ten X at row 2, columns 10-19
  green: { row: 4, column: 0, text: "GREEN" }, // bright green, row 4, columns 0-4
};

/** Compile mmio-writes.c statically; returns the binary's path. */
export function buildMmioWrites(outDir) {
  const out = path.join(outDir, "mmio-writes");
  execFileSync("gcc", ["-static", "-O2", "-Wall", "-o", out, MMIO_WRITES_SOURCE], { stdio: "pipe" });
  return out;
}

/**
 * The guest /init.
 * @param {object} o
 * @param {number} o.seqCount    16-bit stores to the BAR2 register (0: skip)
 * @param {number} o.fillBytes   bytes of 32-bit stores into BAR0 (0: skip)
 * @param {boolean} o.console    load the bochs driver and write CONSOLE_TEXT to /dev/tty0, then
 *                               wait for the host ("VFU-WAIT screen") before ending
 */
export function bochsInit({ seqCount, fillBytes, console }) {
  const t = CONSOLE_TEXT;
  const consolePart = String.raw`
vfu_load_modules
vfu_wait_for /dev/fb0 60 || vfu_result fb0 missing
vfu_result driver "$(vfu_pci_driver "$slot")"
vfu_result fb "$(cat /sys/class/graphics/fb0/name) $(cat /sys/class/graphics/fb0/virtual_size) $(cat /sys/class/graphics/fb0/bits_per_pixel)"
vfu_result vtcon "$(cat /sys/class/vtconsole/vtcon*/name | tr '\n' ';')"
vfu_dmesg 'bochs|Size mismatch|ID mismatch|fbcon|frame buffer|drm'
echo 0 >/sys/class/graphics/fbcon/cursor_blink 2>/dev/null
# Cursor off, clear, home; then the known text.
printf '\033[?25l\033[2J\033[H' >/dev/tty0
printf '${t.title}\n\n%${t.xs.column}s${"X".repeat(t.xs.count)}\n\n\033[1;32m${t.green.text}\033[0m\n' '' >/dev/tty0
sleep 1
vfu_wait_host screen 120
`;
  return `#!/bin/sh
VFU_NO_AUTOLOAD=1
. /lib/vfu/prelude.sh
slot=$(vfu_pci_find 1234 1111 | head -n1)
[ -n "$slot" ] || { vfu_result slot none; vfu_end; }
vfu_result slot "$slot"
dev=/sys/bus/pci/devices/$slot
vfu_pci_line "$dev"
echo 1 >"$dev/enable"
# Timed before the driver claims the BARs: with IO_STRICT_DEVMEM a claimed BAR cannot be mmapped.
[ ${seqCount} -gt 0 ] && vfu_result seq "$(/bin/mmio-writes seq "$dev/resource2" ${SEQ_OFFSET} ${seqCount} 2>&1)"
[ ${fillBytes} -gt 0 ] && vfu_result fill "$(/bin/mmio-writes fill "$dev/resource0" 0 ${fillBytes} 2>&1)"
echo 0 >"$dev/enable"
${console ? consolePart : ""}
vfu_end
`;
}

/** "stores ns 0xvalue" from mmio-writes, parsed; null if the line is something else. */
export function parseMmioWrites(text) {
  const m = /^(\d+) (\d+) (0x[0-9a-f]+)$/.exec((text ?? "").trim());
  if (!m) return null;
  const stores = Number(m[1]);
  const ns = Number(m[2]);
  return { stores, ns, back: Number(m[3]), nsPerStore: ns / stores };
}
