// edu (QEMU's educational device, devices/edu) served from this test process to a real QEMU 11.1
// (`-device vfio-user-pci`). No Linux driver exists for edu, so the guest's /init programs it with
// busybox `devmem` on BAR0 and writes the Command register through sysfs:
// - identification, the liveness check, the factorial unit, interrupt raise/ack;
// - the DMA engine copies a known pattern guest RAM -> device buffer -> guest RAM, through the
//   server's IOMMU model, into a page the kernel was told to keep off (memmap=64K$0x8000000,
//   below edu's 28-bit DMA mask);
// - with Bus Master cleared the same transfer faults (DMA_CMD.ERROR, DMA_ERROR = ENODEV) and
//   guest memory stays as it was.
// Once with shared memfd guest RAM (DMA_MAPs carry fds: zero-copy) and once with plain anonymous
// RAM (no fds: every DMA is a DMA_READ/DMA_WRITE message to QEMU), in the server's default
// message layout. The raw DMA_READ/DMA_WRITE bytes are recorded: QEMU 11.1.3 speaks the spec
// layout (data at message offset 32, a 32-byte DMA_WRITE reply echoing addr and count), not QEMU
// 10.1's, which is why "spec" stays the default. A third boot with `--dma-layout qemu-10.1` is
// the regression check of the switch: the pattern arrives shifted by 4 bytes both ways.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { type EduBehaviour, edu } from "../../../devices/edu/index.ts";
import { bootGuest, buildInitramfs, setupChroot } from "../../../scripts/qemu/boot.mjs";
import {
  Command,
  type DeviceDma,
  type DmaLayout,
  MemorySink,
  PciDevice,
  Server,
  type Session,
  SinkLogger,
} from "../../../src/index.ts";

const DMA_BASE = 0x800_0000; // 128 MiB: reserved with memmap=, below the 28-bit DMA mask
const RESERVE = `memmap=64K$0x${DMA_BASE.toString(16)}`;

/** The 16 words of the pattern the guest writes, as devmem prints them. */
const PATTERN = Array.from(
  { length: 16 },
  (_, i) => `0x${((0x5a000000 + i * 0x01020304 + 0x1001) >>> 0).toString(16).toUpperCase().padStart(8, "0")}`,
);

// The guest's /init (busybox sh). String.raw keeps the shell's backslashes; the shell avoids
// brace expansions, which a template literal would take for its own.
const INIT = String.raw`#!/bin/sh
. /lib/vfu/prelude.sh
slot=$(vfu_pci_find 1234 11e8)
[ -n "$slot" ] || { vfu_result slot none; vfu_end; }
vfu_result slot "$slot"
dev=/sys/bus/pci/devices/$slot
vfu_pci_line "$dev"
bar=$(( $(head -n1 $dev/resource | cut -d' ' -f1) ))
vfu_result bar0 "$(printf 0x%x $bar)"
vfu_result iomem "$(grep -i "$(printf %x $((DMA_BASE)))" /proc/iomem | tr -s ' ' | head -n1)"
r() { devmem $(( bar + $1 )) 32; }
w() { devmem $(( bar + $1 )) 32 $2; }
# The Command register through sysfs config (no setpci in busybox): 2 bytes at 0x04.
getcmd() { od -An -tx1 -j4 -N2 $dev/config | tr -d ' \n'; }
setcmd() {
  printf "\\$(printf %03o $(( $1 & 255 )))\\$(printf %03o $(( $1 >> 8 )))" |
    dd of=$dev/config bs=1 seek=4 count=2 conv=notrunc 2>/dev/null
}
# Wait until (register & mask) == 0 (at most ~5 s).
waitclear() { i=0; while [ $(( $(r $1) & $2 )) -ne 0 ] && [ $i -lt 500 ]; do usleep 10000; i=$((i + 1)); done; }
words() { a=$1; out=; for i in $(seq 0 15); do out="$out $(devmem $(( a + i * 4 )) 32)"; done; echo $out; }
barwords() { out=; for i in $(seq 0 15); do out="$out $(r $(( $1 + i * 4 )))"; done; echo $out; }

vfu_result command-initial "$(getcmd)"
setcmd 6
vfu_result command "$(getcmd)"
vfu_result id "$(r 0x00)"
w 0x04 0x12345678
vfu_result liveness "$(r 0x04)"
w 0x08 10
waitclear 0x20 1
vfu_result factorial "$(r 0x08)"
w 0x08 12
waitclear 0x20 1
vfu_result factorial12 "$(r 0x08)"
w 0x60 0x40
vfu_result irq-status "$(r 0x24)"
w 0x64 0x40
vfu_result irq-acked "$(r 0x24)"

# DMA: the pattern into guest RAM, guest -> buffer, buffer -> guest RAM + 0x1000.
base=$((DMA_BASE))
for i in $(seq 0 15); do
  devmem $(( base + i * 4 )) 32 $(( 0x5a000000 + i * 0x01020304 + 0x1001 ))
  devmem $(( base + 0x1000 + i * 4 )) 32 0
  devmem $(( base + 0x2000 + i * 4 )) 32 0
done
vfu_result pattern "$(words $base)"
w 0x80 $base
w 0x88 0x40000
w 0x90 64
w 0x98 1
waitclear 0x98 1
vfu_result dma-in-cmd "$(r 0x98)"
vfu_result dma-in-error "$(r 0xa0)"
vfu_result dma-buffer "$(barwords 0x40000)"
w 0x80 0x40000
w 0x88 $(( base + 0x1000 ))
w 0x90 64
w 0x98 3
waitclear 0x98 1
vfu_result dma-out-cmd "$(r 0x98)"
vfu_result dma-out-error "$(r 0xa0)"
vfu_result dma-out "$(words $(( base + 0x1000 )))"

# Bus Master off: the same transfer must fault.
setcmd 2
vfu_result command-nobm "$(getcmd)"
w 0x80 0x40000
w 0x88 $(( base + 0x2000 ))
w 0x90 64
w 0x98 3
waitclear 0x98 1
vfu_result nobm-cmd "$(r 0x98)"
vfu_result nobm-error "$(r 0xa0)"
vfu_result nobm-mem "$(words $(( base + 0x2000 )))"
vfu_result uptime "$(cut -d' ' -f1 /proc/uptime)"
vfu_end
`.replaceAll("DMA_BASE", `0x${DMA_BASE.toString(16)}`);

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** The pattern as the bytes guest memory holds (little-endian words). */
const PATTERN_BYTES = (() => {
  const out = new Uint8Array(64);
  const dv = new DataView(out.buffer);
  PATTERN.forEach((w, i) => {
    dv.setUint32(i * 4, Number(w), true);
  });
  return out;
})();

/** One server-to-client DMA message and QEMU's reply, raw. */
interface WireRecord {
  command: number;
  request: Uint8Array;
  replySize: number | null;
  reply: Uint8Array | null;
  error: string | null;
}

function describe(w: WireRecord): string {
  const name =
    w.command === Command.DMA_READ
      ? "DMA_READ"
      : w.command === Command.DMA_WRITE
        ? "DMA_WRITE"
        : `${w.command}`;
  const reply = w.reply ? `reply msg_size=${w.replySize} body=${hex(w.reply)}` : `failed: ${w.error}`;
  return `${name} body=${hex(w.request)} -> ${reply}`;
}

interface BootSpec {
  ram: "memfd" | "anon";
  /** The server's DMA_READ/DMA_WRITE layout; undefined: the server's default. */
  layout?: DmaLayout;
}

if (process.env.VFU_SKIP_QEMU === "1") {
  t.skip("QEMU end-to-end tests: skipped because VFU_SKIP_QEMU=1", () => {});
} else {
  const work = mkdtempSync(path.join(tmpdir(), "vfu-e2e-edu-"));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  let chroot = "";
  let initramfs = "";

  t.before(async () => {
    chroot = await setupChroot({ quiet: true });
    const built = buildInitramfs({ chroot, out: path.join(work, "edu.cpio.gz"), initText: INIT });
    initramfs = built.initramfs;
    t.comment(`initramfs: ${built.ms} ms`);
  });

  const boot = async (b: BootSpec) => {
    const dir = mkdtempSync(path.join(work, `${b.ram}-${b.layout ?? "default"}-`));
    const socketPath = path.join(dir, "edu.sock");
    const logs = new MemorySink();
    const log = new SinkLogger(logs, "info");
    const server = new Server({ log });
    let device: PciDevice<EduBehaviour> | undefined;
    let deviceDma: DeviceDma | undefined;
    const ep = server.listen(
      (dma, devLog) => {
        deviceDma = dma;
        device = new PciDevice(edu, { dma, log: devLog });
        return device;
      },
      { socketPath, log: log.child("[edu]"), ...(b.layout ? { dmaLayout: b.layout } : {}) },
    );
    // Record every server-to-client request and QEMU's reply, raw: the layout evidence.
    const wire: WireRecord[] = [];
    ep.onSession = (s: Session) => {
      const request = s.request.bind(s);
      s.request = async (command, body) => {
        const rec: WireRecord = { command, request: body.slice(), replySize: null, reply: null, error: null };
        wire.push(rec);
        try {
          const reply = await request(command, body);
          rec.replySize = reply.header.msgSize;
          rec.reply = reply.body.slice();
          return reply;
        } catch (err) {
          rec.error = (err as Error).message;
          throw err;
        }
      };
    };
    try {
      const r = await bootGuest({
        chroot,
        initramfs,
        sockets: [socketPath],
        ram: b.ram,
        extraAppend: RESERVE,
        timeoutMs: 120_000,
      });
      const e = device!.behaviour;
      return {
        r,
        wire,
        logs,
        stats: { ...e.stats },
        buffer: e.buffer.slice(0, 64),
        faults: { ...deviceDma!.faultCounts },
      };
    } finally {
      await server.close();
    }
  };

  const words = (text: string | undefined) => (text ?? "").trim().split(/\s+/);

  for (const ram of ["memfd", "anon"] as const) {
    t.test(`edu programmed by a real guest with devmem (${ram} RAM, default DMA layout)`, async (t) => {
      const { r, wire, stats, buffer, faults, logs } = await boot({ ram });
      const vfu = r.lines.filter((l) => /VFU-(RESULT|PCI|LOG)/.test(l));
      const context = { consoleTail: r.lines.slice(-40).join("\n"), qemuStderr: r.stderr };
      t.equal(r.timedOut, false, "QEMU did not time out", context);
      t.equal(r.panicked, false, "no kernel panic");
      t.equal(r.ended, true, "VFU-END seen", context);
      t.equal(r.exitCode, 0, "QEMU exited 0");
      const res = r.results;

      const entry = r.pci.find((p) => p.vendor === "1234" && p.device === "11e8");
      t.ok(entry, "1234:11e8 enumerated");
      t.equal(entry?.bars[0]?.size, 1n << 20n, "BAR0 is 1 MiB");
      t.match(res.iomem, /^08000000-0800ffff : Reserved/, "memmap= kept the DMA page from the kernel");
      t.equal(res.command, "0600", "Command: Memory and Bus Master set through sysfs config");

      t.equal(res.id, "0x010000ED", "identification");
      t.equal(res.liveness, "0xEDCBA987", "liveness: the inverse of 0x12345678");
      t.equal(res.factorial, "0x00375F00", "10! = 3628800");
      t.equal(res.factorial12, "0x1C8CFC00", "12! = 479001600");
      t.equal(res["irq-status"], "0x00000040", "a raised interrupt shows in IRQ_STATUS");
      t.equal(res["irq-acked"], "0x00000000", "and the ack clears it");

      t.same(words(res.pattern), PATTERN, "the guest wrote the pattern");
      t.equal(res["dma-in-cmd"], "0x00000000", "guest -> device: done, no error");
      t.same(words(res["dma-buffer"]), PATTERN, "the device buffer holds the pattern (read through BAR0)");
      t.same(buffer, PATTERN_BYTES, "and so does the model, server side");
      t.equal(res["dma-out-cmd"], "0x00000002", "device -> guest: done, no error");
      t.same(words(res["dma-out"]), PATTERN, "the pattern came back to guest RAM + 0x1000");

      t.equal(res["command-nobm"], "0200", "Bus Master cleared");
      t.equal(res["nobm-cmd"], "0x0000000A", "the transfer ended with DMA_CMD.ERROR");
      t.equal(res["nobm-error"], "0x00000013", "DMA_ERROR = ENODEV (19)");
      t.same(words(res["nobm-mem"]), Array(16).fill("0x00000000"), "guest memory untouched");
      t.equal(faults["bus-master-off"], 1, "one bus-master-off fault in the IOMMU model");
      t.match(logs.text(), /DMA fault \(bus-master-off\)/, "logged");
      t.same(stats, { factorials: 2, dmaTransfers: 2, dmaErrors: 1, irqsRaised: 1 });

      if (ram === "memfd") {
        t.same(wire.map(describe), [], "fd-backed RAM: zero-copy, not one DMA_READ/DMA_WRITE message");
      } else {
        t.equal(wire.length, 2, "anonymous RAM: one DMA_READ and one DMA_WRITE (none with Bus Master off)");
        const [rd, wr] = wire;
        t.equal(rd?.command, Command.DMA_READ);
        t.equal(rd?.replySize, 32 + 64, "DMA_READ reply msg_size 32 + count");
        t.equal(hex(rd!.reply!.subarray(0, 16)), "00000008000000004000000000000000", "addr u64, count u64");
        t.same(rd?.reply?.subarray(16), PATTERN_BYTES, "data at message offset 32: the spec layout");
        t.equal(wr?.command, Command.DMA_WRITE);
        t.equal(wr?.replySize, 32, "DMA_WRITE reply msg_size 32");
        t.equal(hex(wr!.reply!), "00100008000000004000000000000000", "echoing addr and count (spec)");
      }
      t.comment(`${ram}: boot to VFU-END ${r.durationMs} ms, guest uptime ${res.uptime} s`);
      t.comment(`${ram}: guest lines:\n${vfu.join("\n")}`);
      t.comment(`${ram}: DMA messages:\n${wire.map(describe).join("\n") || "(none)"}`);
    });
  }

  // Regression check of the layout switch: QEMU 11.1 speaks the spec layout (above), so the
  // server's other layout, QEMU 10.1's, must corrupt the transfer in the way that layout predicts:
  // DMA_READ data taken 4 bytes early (the upper half of count, zeros, first), DMA_WRITE data
  // placed 4 bytes early (QEMU drops the first 4 bytes and reads 4 padding bytes at the end).
  t.test("anonymous RAM with --dma-layout qemu-10.1: QEMU 11.1 does not speak it", async (t) => {
    const { r, wire } = await boot({ ram: "anon", layout: "qemu-10.1" });
    t.equal(r.ended, true, "VFU-END seen", { consoleTail: r.lines.slice(-40).join("\n") });
    const res = r.results;
    t.equal(res["dma-in-cmd"], "0x00000000", "no error is detected…");
    t.same(
      words(res["dma-buffer"]),
      ["0x00000000", ...PATTERN.slice(0, 15)],
      "…but the buffer is the pattern shifted by 4 bytes",
    );
    t.same(
      words(res["dma-out"]),
      [...PATTERN.slice(0, 15), "0x00000000"],
      "and guest memory gets a shifted copy back",
    );
    t.comment(`qemu-10.1 layout: DMA messages:\n${wire.map(describe).join("\n")}`);
  });
}
