// gpio-idio16 served from this test process to a real QEMU 11.1 (`-device vfio-user-pci`) and
// driven by the guest's own Linux driver (gpio-pci-idio-16 over gpio-idio-16 and gpio-regmap),
// once with shared memfd guest RAM and once with plain anonymous RAM:
// - the guest enumerates 494f:0dc8 with an I/O BAR2 and the `pci-idio-16` driver binds;
// - outputs the guest writes through sysfs (/sys/class/gpio/OUTn) reach the device model;
// - inputs the test sets (while the guest waits at a VFU-WAIT handshake) are read by the guest;
// - an input change raises INTx, the driver handles it (clears the card's interrupt), and the
//   interrupt counts in the guest's /proc/interrupts grow: the PCI line and the GPIO line's.
// Every DEVICE_SET_IRQS QEMU sends and every eventfd signal is recorded and reported.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { gpioIdio16, IDIO16_BAR, type Idio16Behaviour } from "../../../devices/gpio-idio16/index.ts";
import { bootGuest, buildInitramfs, setupChroot } from "../../../scripts/qemu/boot.mjs";
import { IrqSetFlag, MemorySink, PciDevice, Server, SinkLogger } from "../../../src/index.ts";

const MODULES = ["gpio-regmap", "gpio-idio-16", "gpio-pci-idio-16"];

// The guest's /init (busybox sh; `\$` and `\\` below are escapes of this template literal).
// It exports OUT0, OUT5, OUT12 and IIN0, IIN3, IIN9.
const INIT = `#!/bin/sh
. /lib/vfu/prelude.sh
slot=$(vfu_pci_find 494f 0dc8)
vfu_result slot "\${slot:-none}"
[ -n "$slot" ] || vfu_end
dev=/sys/bus/pci/devices/$slot
vfu_pci_line "$dev"
vfu_result driver "$(vfu_pci_driver "$slot")"
if [ -e "/sys/bus/pci/drivers/pci-idio-16/$slot" ]; then vfu_result bound yes; else vfu_result bound no; fi
chip=
for c in /sys/class/gpio/gpiochip*; do
  [ "$(cat "$c/label" 2>/dev/null)" = "$slot" ] && chip=$c
done
[ -n "$chip" ] || { vfu_result gpiochip none; vfu_end; }
base=$(cat "$chip/base")
vfu_result gpiochip "\${chip##*/} base=$base ngpio=$(cat "$chip/ngpio")"
G=/sys/class/gpio
for n in 0 5 12; do echo $((base + n)) >$G/export; done
for n in 0 3 9; do echo $((base + 16 + n)) >$G/export; done
vfu_result names $(cd $G && ls -d OUT* IIN* 2>/dev/null | sort)

# Outputs: the chip has no direction callbacks, so sysfs shows no direction file and
# treats every line as an output: writing value is all it takes.
for n in 0 5 12; do echo 1 >$G/OUT$n/value; done
vfu_result out-values "$(cat $G/OUT0/value)$(cat $G/OUT5/value)$(cat $G/OUT12/value)"
vfu_wait_host outputs-1
echo 0 >$G/OUT5/value
vfu_wait_host outputs-2

# Inputs: IIN0, IIN3, IIN9 as the server drives them.
rd() { echo "$(cat $G/IIN0/value)$(cat $G/IIN3/value)$(cat $G/IIN9/value)"; }
vfu_result inputs-initial "$(rd)"
vfu_wait_host inputs-1
vfu_result inputs-after "$(rd)"

# Interrupts: requesting an edge on IIN3 unmasks it (the driver enables the card's IRQ).
irq=$(cat "$dev/irq")
vfu_result irq "$irq"
cnt() { awk -v n="$1:" '$1 == n { s = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i; print s }' /proc/interrupts; }
gcnt() { awk '/gpiolib/ { s += $2 } END { print s + 0 }' /proc/interrupts; }
grow() { i=0; while [ "$(gcnt)" -le "$1" ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done; }
# Linux 6.12's regmap-irq handles every input line on each interrupt (they share status bit 2)
# and looks their Linux IRQ numbers up; a line whose interrupt was never mapped comes back as
# IRQ 0, on x86 the timer, whose missing thread function the IRQ thread then calls: an oops.
# Map all sixteen first by requesting and releasing an edge on each.
for n in $(seq 0 15); do
  [ -e $G/IIN$n ] || echo $((base + 16 + n)) >$G/export
  echo both >$G/IIN$n/edge && echo none >$G/IIN$n/edge || vfu_log "IIN$n: no edge"
done
if echo both >$G/IIN3/edge; then vfu_result edge ok; else vfu_result edge fail; fi
grep -E "^ *$irq:|gpiolib" /proc/interrupts | while read -r l; do vfu_log "interrupts: $l"; done
b=$(cnt "$irq"); gb=$(gcnt)
vfu_wait_host toggle-1
grow "$gb"
a=$(cnt "$irq"); ga=$(gcnt)
vfu_result intx-1 "$b $a"
vfu_result gpio-irq-1 "$gb $ga"
vfu_result in3-1 "$(cat $G/IIN3/value)"
vfu_wait_host toggle-2
grow "$ga"
a2=$(cnt "$irq"); ga2=$(gcnt)
vfu_result intx-2 "$a $a2"
vfu_result gpio-irq-2 "$ga $ga2"
vfu_result in3-2 "$(cat $G/IIN3/value)"
vfu_result spurious "$(tr '\\n' ' ' </proc/irq/$irq/spurious)"
grep -E "^ *$irq:|gpiolib" /proc/interrupts | while read -r l; do vfu_log "interrupts: $l"; done
vfu_dmesg 'idio|gpio|nobody cared|0000:00:01\\.0|WARNING|RIP:|Call Trace|cut here|Oops|BUG:'
vfu_result uptime "$(cut -d' ' -f1 /proc/uptime)"
vfu_end
`;

interface IrqCall {
  at: string;
  action: string;
  data: string;
  index: number;
  start: number;
  count: number;
  fds: number;
}

function describeSetIrqs(flags: number): { action: string; data: string } {
  const action =
    {
      [IrqSetFlag.ACTION_MASK]: "MASK",
      [IrqSetFlag.ACTION_UNMASK]: "UNMASK",
      [IrqSetFlag.ACTION_TRIGGER]: "TRIGGER",
    }[flags & IrqSetFlag.ACTION_TYPE_MASK] ?? `action?${flags & IrqSetFlag.ACTION_TYPE_MASK}`;
  const data =
    { [IrqSetFlag.DATA_NONE]: "NONE", [IrqSetFlag.DATA_BOOL]: "BOOL", [IrqSetFlag.DATA_EVENTFD]: "EVENTFD" }[
      flags & IrqSetFlag.DATA_TYPE_MASK
    ] ?? `data?${flags & IrqSetFlag.DATA_TYPE_MASK}`;
  return { action, data };
}

/** "a a a b" -> "a×3 b": repeated accesses (the driver's per-line enable/disable) stay readable. */
function runLength(items: string[]): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < items.length) {
    let j = i;
    while (j + 1 < items.length && items[j + 1] === items[i]) j++;
    out.push(j > i ? `${items[i]}×${j - i + 1}` : items[i]!);
    i = j + 1;
  }
  return out;
}

function pair(text: string | undefined): [number, number] {
  const [a, b] = (text ?? "").split(/\s+/).map(Number);
  return [a ?? Number.NaN, b ?? Number.NaN];
}

if (process.env.VFU_SKIP_QEMU === "1") {
  t.skip("QEMU end-to-end tests: skipped because VFU_SKIP_QEMU=1", () => {});
} else {
  const work = mkdtempSync(path.join(tmpdir(), "vfu-e2e-gpio-"));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  let chroot = "";
  let initramfs = "";

  t.before(async () => {
    chroot = await setupChroot({ quiet: true });
    const built = buildInitramfs({
      chroot,
      out: path.join(work, "gpio-idio16.cpio.gz"),
      initText: INIT,
      modules: MODULES,
    });
    initramfs = built.initramfs;
    t.comment(`initramfs: ${built.ms} ms, modules ${built.modules.join(" ")}`);
  });

  for (const ram of ["memfd", "anon"] as const) {
    t.test(`the guest's pci-idio-16 driver drives gpio-idio16 (${ram} RAM)`, async (t) => {
      const dir = mkdtempSync(path.join(work, `${ram}-`));
      const socketPath = path.join(dir, "gpio.sock");
      const logs = new MemorySink();
      const log = new SinkLogger(logs, "info");
      const server = new Server({ log });
      let device: PciDevice<Idio16Behaviour> | undefined;
      server.listen(
        (dma, devLog) => {
          device = new PciDevice(gpioIdio16, { dma, log: devLog, options: { inputs: "0x0001" } });
          return device;
        },
        { socketPath, log: log.child("[gpio-idio16]") },
      );
      t.teardown(() => server.close());
      const dev = device!;
      const gpio: Idio16Behaviour = dev.behaviour;

      // What QEMU does with the interrupt: every SET_IRQS, every eventfd signal, every BAR2 access.
      let phase = "boot";
      const irqCalls: IrqCall[] = [];
      const setIrqs = dev.irqs.setIrqs.bind(dev.irqs);
      dev.irqs.setIrqs = (req, fds) => {
        irqCalls.push({
          at: phase,
          ...describeSetIrqs(req.flags),
          index: req.index,
          start: req.start,
          count: req.count,
          fds: fds.length,
        });
        setIrqs(req, fds);
      };
      const signals: string[] = [];
      dev.irqs.onSignal = (index, vector) => signals.push(`${phase}:${index}/${vector}`);
      const barOps: string[] = [];
      const read = dev.read.bind(dev);
      const write = dev.write.bind(dev);
      dev.read = (index, offset, count) => {
        const r = read(index, offset, count);
        if (index === IDIO16_BAR && !(r instanceof Promise)) barOps.push(`${phase}:R${offset}=${r[0]}`);
        return r;
      };
      // From an input change to the driver's clear (a write to 0x1): the interrupt's round trip.
      let changedAt = 0;
      const latencies: number[] = [];
      dev.write = (index, offset, data) => {
        if (index === IDIO16_BAR) barOps.push(`${phase}:W${offset}=${data[0]}`);
        if (index === IDIO16_BAR && offset === 1n && changedAt) {
          latencies.push(Math.round(performance.now() - changedAt));
          changedAt = 0;
        }
        return write(index, offset, data);
      };
      const outputHistory: number[] = [];
      gpio.onOutputChange = (outputs) => outputHistory.push(outputs);

      const atWait: Record<
        string,
        { outputs: number; irqEnabled: boolean; asserted: boolean; status: number }
      > = {};
      const r = await bootGuest({
        chroot,
        initramfs,
        sockets: [socketPath],
        ram,
        timeoutMs: 90_000,
        onWait: (token) => {
          atWait[token] = {
            outputs: gpio.outputs,
            irqEnabled: gpio.irqEnabled,
            asserted: gpio.interruptAsserted,
            status: gpio.irqStatus,
          };
          phase = token;
          switch (token) {
            case "inputs-1":
              gpio.setInput(0, false);
              gpio.setInput(3, true);
              gpio.setInput(9, true);
              break;
            case "toggle-1":
              changedAt = performance.now();
              gpio.setInput(3, false);
              break;
            case "toggle-2":
              changedAt = performance.now();
              gpio.setInput(3, true);
              break;
          }
        },
      });
      phase = "end";
      const vfu = r.lines.filter((l) => /VFU-(RESULT|PCI|LOG|DMESG|WAIT)/.test(l));
      const context = { consoleTail: r.lines.slice(-40).join("\n"), qemuStderr: r.stderr };
      t.equal(r.timedOut, false, "QEMU did not time out", context);
      t.equal(r.panicked, false, "no kernel panic");
      t.equal(r.ended, true, "VFU-END seen", context);
      t.equal(r.exitCode, 0, "QEMU exited 0");
      t.same(
        r.insmod,
        { "gpio-regmap": "ok", "gpio-idio-16": "ok", "gpio-pci-idio-16": "ok" },
        "modules loaded",
      );

      // Enumeration and binding.
      const entry = r.pci.find((p) => p.vendor === "494f" && p.device === "0dc8");
      t.ok(entry, "494f:0dc8 enumerated");
      t.equal(entry?.class, "118000", "class as served");
      t.equal(entry?.bars[2]?.type, "io", "BAR2 is an I/O BAR");
      t.equal(entry?.bars[2]?.size, 256n, "of 256 bytes");
      t.same(Object.keys(entry?.bars ?? {}), ["2"], "and the only BAR");
      t.equal(r.results.driver, "pci-idio-16", "the pci-idio-16 driver is bound");
      t.equal(r.results.bound, "yes", "/sys/bus/pci/drivers/pci-idio-16/<slot> exists");
      t.match(r.results.gpiochip, /^gpiochip\d+ base=\d+ ngpio=32$/, "a 32-line gpiochip");
      t.equal(r.results.names, "IIN0 IIN3 IIN9 OUT0 OUT12 OUT5", "exports carry the driver's line names");

      // Outputs: written in the guest, seen by the model.
      t.equal(r.results["out-values"], "111", "the guest reads back what it wrote");
      t.equal(atWait["outputs-1"]?.outputs, 0x1021, "OUT0, OUT5, OUT12 driven (server side)");
      t.equal(atWait["outputs-2"]?.outputs, 0x1001, "OUT5 released (server side)");
      t.same(
        outputHistory.slice(0, 4),
        [0x0001, 0x0021, 0x1021, 0x1001],
        "output history: OUT0, OUT5, OUT12 on one by one, then OUT5 off",
      );
      t.ok(
        logs.lines.some((l) => l.level === "info" && l.line.endsWith("outputs 0x1021: OUT12=1")),
        "the output change is logged at info",
      );

      // Inputs: set by the server while the guest waited, read by the guest.
      t.equal(r.results["inputs-initial"], "100", "IIN0 high from --set inputs=0x0001");
      t.equal(r.results["inputs-after"], "011", "IIN0 low, IIN3 and IIN9 high from the server");

      // Interrupts.
      t.equal(r.results.edge, "ok", "edge 'both' accepted on IIN3");
      t.equal(atWait["toggle-1"]?.irqEnabled, true, "requesting the edge enabled the card's IRQ");
      t.equal(atWait["toggle-1"]?.asserted, false, "nothing pending before the toggle");
      const [b1, a1] = pair(r.results["intx-1"]);
      const [g0, g1] = pair(r.results["gpio-irq-1"]);
      t.ok(a1 > b1, `INTx count grew on IIN3 falling (${b1} -> ${a1})`);
      t.equal(g1, g0 + 1, `the IIN3 gpio interrupt fired once (${g0} -> ${g1})`);
      t.equal(r.results["in3-1"], "0");
      const [, a2] = pair(r.results["intx-2"]);
      const [, g2] = pair(r.results["gpio-irq-2"]);
      t.ok(a2 > a1, `INTx count grew on IIN3 rising (${a1} -> ${a2})`);
      t.equal(g2, g1 + 1, `the IIN3 gpio interrupt fired again (${g1} -> ${g2})`);
      t.equal(r.results["in3-2"], "1");
      t.equal(atWait["toggle-2"]?.asserted, false, "the driver cleared the first interrupt");
      t.equal(atWait["toggle-2"]?.status, 0, "status clear before the second toggle");
      const intxSignals = signals.filter((s) => s.endsWith(":0/0"));
      t.ok(
        intxSignals.some((s) => s.startsWith("toggle-1:")),
        "INTx eventfd signalled after toggle-1",
      );
      t.ok(
        intxSignals.some((s) => s.startsWith("toggle-2:")),
        "INTx eventfd signalled after toggle-2",
      );
      t.notOk(
        r.lines.some((l) => /nobody cared|Disabling IRQ/.test(l)),
        "the kernel never disabled the line",
      );
      t.notOk(
        r.lines.some((l) => /Oops|BUG:|Call Trace/.test(l)),
        "no oops (see the note on mapping every input interrupt first)",
      );

      const summary = irqCalls.map(
        (c) => `${c.at}: idx=${c.index} ${c.action}|${c.data} start=${c.start} count=${c.count} fds=${c.fds}`,
      );
      t.comment(`${ram}: boot to VFU-END ${r.durationMs} ms, guest uptime ${r.results.uptime} s`);
      t.comment(`${ram}: guest lines:\n${vfu.join("\n")}`);
      t.comment(`${ram}: DEVICE_SET_IRQS seen:\n${summary.join("\n")}`);
      t.comment(`${ram}: eventfd signals: ${signals.join(" ")}`);
      t.comment(`${ram}: input change -> driver's clear: ${latencies.join(", ")} ms`);
      t.comment(`${ram}: BAR2 accesses (phase = the last VFU-WAIT): ${runLength(barOps).join(" ")}`);
    });
  }
}
