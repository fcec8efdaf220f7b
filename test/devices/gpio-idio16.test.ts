// gpio-idio16 (the ACCES PCI-IDIO-16) through the TypeScript client, over the in-memory pair and a
// real UNIX socket: what it reports, its config space, the register file in BAR2 (outputs,
// inputs, the read/write-different interrupt registers), change-of-state interrupts as the
// client's INTx eventfd sees them, reset and disconnect, the Linux driver's own register sequence,
// and the ways to drive the inputs from the server side (API, --set inputs, the control FIFO, the
// `vfu` command line).

import { spawn } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { parseControlLine, parseInputMask } from "../../devices/gpio-idio16/control.ts";
import {
  gpioIdio16,
  IDIO16_BAR,
  type Idio16Behaviour,
  IrqStatus,
  Reg,
} from "../../devices/gpio-idio16/index.ts";
import { Errno } from "../../protocol/index.ts";
import {
  createMemoryPair,
  DeviceDma,
  type DeviceFactory,
  DeviceFlag,
  IrqInfoFlag,
  IrqSetFlag,
  MemorySink,
  PciCommand,
  PciDevice,
  PciHeader,
  PciIrq,
  PciRegion,
  PciStatus,
  RegionFlag,
  Server,
  SinkLogger,
  serveConnection,
  silentLogger,
  VfioUserClient,
} from "../../src/index.ts";
import { startCliServer, waitFor } from "../helpers/cli-server.ts";

const BAR = IDIO16_BAR;
const _repoRoot = fileURLToPath(new URL("../..", import.meta.url));

type Transport = "memory" | "socket";

interface Harness {
  client: VfioUserClient;
  device: PciDevice<Idio16Behaviour>;
  gpio: Idio16Behaviour;
  logs: MemorySink;
  read8(offset: number): Promise<number>;
  write8(offset: number, value: number): Promise<void>;
  cfg(offset: number, size: 1 | 2 | 4): Promise<number>;
  cfgWrite(offset: number, size: 1 | 2 | 4, value: number): Promise<void>;
  /** Reconnect a fresh client (socket transport only). */
  reconnect(): Promise<VfioUserClient>;
  close(): Promise<void>;
}

function le(value: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (value >>> (8 * i)) & 0xff;
  return out;
}

function num(bytes: Uint8Array): number {
  let v = 0;
  for (let i = bytes.length - 1; i >= 0; i--) v = v * 256 + bytes[i]!;
  return v;
}

async function serve(transport: Transport, options: Record<string, string> = {}): Promise<Harness> {
  const logs = new MemorySink();
  const log = new SinkLogger(logs, "debug");
  let device: PciDevice<Idio16Behaviour> | undefined;
  const make: DeviceFactory = (dma) => {
    device = new PciDevice(gpioIdio16, { dma, log, options });
    return device;
  };
  let client: VfioUserClient;
  let close: () => Promise<void>;
  let reconnect: () => Promise<VfioUserClient>;
  if (transport === "memory") {
    const [a, b] = createMemoryPair();
    const session = serveConnection(b, make, { log });
    client = await VfioUserClient.over(a);
    close = async () => {
      client.close();
      await session.ended;
      device!.dispose();
    };
    reconnect = () => Promise.reject(new Error("no reconnect over the in-memory pair"));
  } else {
    const dir = mkdtempSync(path.join(tmpdir(), "vfu-idio16-"));
    const socketPath = path.join(dir, "gpio.sock");
    const server = new Server({ log });
    server.listen(make, { socketPath });
    client = await VfioUserClient.connect(socketPath);
    close = async () => {
      client.close();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    };
    reconnect = async () => {
      const ended = server.endpoints[0]!.session?.ended;
      client.close();
      await ended;
      client = await VfioUserClient.connect(socketPath);
      h.client = client;
      return client;
    };
  }
  const h: Harness = {
    client,
    device: device!,
    gpio: device!.behaviour,
    logs,
    read8: async (offset) => (await h.client.regionRead(BAR, offset, 1))[0]!,
    write8: (offset, value) => h.client.regionWrite(BAR, offset, le(value, 1)),
    cfg: async (offset, size) => num(await h.client.regionRead(PciRegion.CONFIG, offset, size)),
    cfgWrite: (offset, size, value) => h.client.regionWrite(PciRegion.CONFIG, offset, le(value, size)),
    reconnect,
    close: () => close(),
  };
  return h;
}

async function errnoOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 0;
  } catch (err) {
    return (err as { errno?: number }).errno ?? -1;
  }
}

function unmask(client: VfioUserClient): Promise<void> {
  return client.setIrqs({
    index: PciIrq.INTX,
    flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_UNMASK,
    start: 0,
    count: 1,
  });
}

/** Let eventfd writes and posted work settle. */
function tick(ms = 10): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

for (const transport of ["memory", "socket"] as const) {
  t.test(`over ${transport === "memory" ? "the in-memory pair" : "a UNIX socket"}`, async (t) => {
    t.test("the device: PCI, BAR2 a 256-byte I/O region, INTx only", async (t) => {
      const h = await serve(transport);
      t.teardown(h.close);
      const info = await h.client.getDeviceInfo();
      t.equal(info.flags, DeviceFlag.PCI | DeviceFlag.RESET, "PCI with RESET");
      t.equal(info.numRegions, 9);
      t.equal(info.numIrqs, 5);
      const bar2 = await h.client.getRegionInfo(BAR);
      t.equal(bar2.size, 256n, "BAR2 is 256 bytes");
      t.equal(bar2.flags, RegionFlag.READ | RegionFlag.WRITE, "trapped: read/write, no mmap");
      t.equal(bar2.fd, null);
      for (const i of [0, 1, 3, 4, 5, PciRegion.ROM, PciRegion.VGA]) {
        t.equal((await h.client.getRegionInfo(i)).size, 0n, `region ${i} is absent`);
      }
      t.equal((await h.client.getRegionInfo(PciRegion.CONFIG)).size, 256n, "conventional PCI config space");
      const intx = await h.client.getIrqInfo(PciIrq.INTX);
      t.equal(intx.count, 1);
      t.equal(intx.flags, IrqInfoFlag.EVENTFD | IrqInfoFlag.MASKABLE | IrqInfoFlag.AUTOMASKED);
      t.equal((await h.client.getIrqInfo(PciIrq.MSI)).count, 0, "no MSI");
      t.equal((await h.client.getIrqInfo(PciIrq.MSIX)).count, 0, "no MSI-X");
    });

    t.test("config space: IDs, class, INTA#, an I/O BAR2 sized like hardware", async (t) => {
      const h = await serve(transport);
      t.teardown(h.close);
      t.equal(await h.cfg(PciHeader.VENDOR_ID, 2), 0x494f, "ACCES");
      t.equal(await h.cfg(PciHeader.DEVICE_ID, 2), 0x0dc8, "PCI-IDIO-16");
      t.equal(await h.cfg(PciHeader.SUBSYSTEM_VENDOR_ID, 2), 0x494f);
      t.equal(await h.cfg(PciHeader.SUBSYSTEM_ID, 2), 0x0dc8);
      t.equal((await h.cfg(PciHeader.REVISION_ID, 4)) >>> 8, 0x118000, "class: signal processing, other");
      t.equal(await h.cfg(PciHeader.HEADER_TYPE, 1), 0, "type 0, single function");
      t.equal(await h.cfg(PciHeader.INTERRUPT_PIN, 1), 1, "INTA#");
      t.equal(await h.cfg(PciHeader.CAPABILITIES, 1), 0, "no capabilities");
      t.equal((await h.cfg(PciHeader.STATUS, 2)) & PciStatus.CAP_LIST, 0);
      t.equal(await h.cfg(PciHeader.BAR2, 4), 0x1, "BAR2: I/O space indicator");
      for (const off of [PciHeader.BAR0, PciHeader.BAR1, PciHeader.BAR3, PciHeader.BAR4, PciHeader.BAR5]) {
        await h.cfgWrite(off, 4, 0xffffffff);
        t.equal(await h.cfg(off, 4), 0, `BAR at 0x${off.toString(16)} is not implemented`);
      }
      await h.cfgWrite(PciHeader.BAR2, 4, 0xffffffff);
      t.equal(await h.cfg(PciHeader.BAR2, 4), 0xffffff01, "sizing: 256 bytes of I/O");
      await h.cfgWrite(PciHeader.BAR2, 4, 0xc000);
      t.equal(await h.cfg(PciHeader.BAR2, 4), 0xc001, "address kept, masked to the size");
      await h.cfgWrite(PciHeader.COMMAND, 2, 0xffff);
      const cmd = await h.cfg(PciHeader.COMMAND, 2);
      t.equal(cmd & PciCommand.IO, PciCommand.IO, "I/O decode can be enabled");
      t.equal(cmd & PciCommand.MEMORY, 0, "no memory BAR: Memory Space stays 0");
    });

    t.test("outputs: registers 0x0 and 0x4 latch OUT0-15; the server sees and logs them", async (t) => {
      const h = await serve(transport);
      t.teardown(h.close);
      const seen: Array<[number, number]> = [];
      h.gpio.onOutputChange = (outputs, changed) => seen.push([outputs, changed]);
      t.equal(await h.read8(Reg.OUT0_7), 0, "outputs are off at power-on");
      await h.write8(Reg.OUT0_7, 0x81);
      await h.write8(Reg.OUT8_15, 0x02);
      t.equal(h.gpio.outputs, 0x0281, "OUT0, OUT7 and OUT9");
      t.ok(h.gpio.output(0) && h.gpio.output(7) && h.gpio.output(9), "output(n)");
      t.notOk(h.gpio.output(8));
      t.equal(await h.read8(Reg.OUT0_7), 0x81, "0x0 reads back the latch");
      t.equal(await h.read8(Reg.OUT8_15), 0x02, "0x4 reads back the latch");
      await h.write8(Reg.OUT0_7, 0x81);
      t.same(
        seen,
        [
          [0x0081, 0x0081],
          [0x0281, 0x0200],
        ],
        "one report per change; rewriting the same value reports nothing",
      );
      const info = h.logs.lines.filter((l) => l.level === "info").map((l) => l.line);
      t.ok(info.includes("outputs 0x0081: OUT0=1 OUT7=1"), "info log names the lines");
      t.ok(info.includes("outputs 0x0281: OUT9=1"));
      t.throws(() => h.gpio.output(16), RangeError);
    });

    t.test("inputs: registers 0x1 and 0x5 read IIN0-15 as the server drives them", async (t) => {
      const h = await serve(transport, { inputs: "0x8001" });
      t.teardown(h.close);
      t.equal(h.gpio.inputs, 0x8001, "--set inputs gives the levels at start");
      t.equal(await h.read8(Reg.IN0_7), 0x01);
      t.equal(await h.read8(Reg.IN8_15), 0x80);
      h.gpio.setInput(3, true);
      h.gpio.setInput(0, false);
      t.equal(await h.read8(Reg.IN0_7), 0x08, "IIN3 high, IIN0 low");
      h.gpio.setInputs(0x1200, 0xff00);
      t.equal(await h.read8(Reg.IN8_15), 0x12, "the mask limits what changes");
      t.equal(await h.read8(Reg.IN0_7), 0x08, "inputs outside the mask keep their levels");
      t.equal(h.gpio.inputs, 0x1208);
      await h.write8(Reg.IN8_15, 0xff);
      t.equal(await h.read8(Reg.IN8_15), 0x12, "writes to 0x5 are ignored");
      t.throws(() => h.gpio.setInput(16, true), RangeError);
      t.throws(() => h.gpio.setInput(-1, true), RangeError);
      t.throws(() => h.gpio.setInputs(1.5), RangeError);
    });

    t.test(
      "access widths: byte registers in address order; 8-byte and outside accesses refused",
      async (t) => {
        const h = await serve(transport, { inputs: "0x3412" });
        t.teardown(h.close);
        await h.client.regionWrite(BAR, Reg.OUT0_7, le(0xa5, 1));
        t.equal(num(await h.client.regionRead(BAR, 0, 2)), 0x12a5, "2-byte read: OUT0-7, IIN0-7");
        t.equal(num(await h.client.regionRead(BAR, 4, 2)), 0x3400, "OUT8-15, IIN8-15");
        await h.client.regionWrite(BAR, 4, le(0x0000_0077, 4));
        t.equal(h.gpio.outputs, 0x77a5, "a 4-byte write at 0x4 sets OUT8-15 from its first byte");
        t.equal(num(await h.client.regionRead(BAR, 8, 4)), 0, "0x8-0xFF decode nothing: 0");
        t.equal(num(await h.client.regionRead(BAR, 0xfc, 4)), 0);
        await h.client.regionWrite(BAR, 0x10, le(0xffffffff, 4));
        t.equal(h.gpio.outputs, 0x77a5, "writes there change nothing");
        t.equal(await errnoOf(h.client.regionRead(BAR, 0, 8)), Errno.EINVAL, "8-byte access refused");
        t.equal(await errnoOf(h.client.regionRead(BAR, 0xff, 2)), Errno.EINVAL, "past the end refused");
        t.equal(await errnoOf(h.client.regionWrite(BAR, 0x100, le(0, 1))), Errno.EINVAL);
        t.equal(await errnoOf(h.client.regionRead(0, 0, 1)), Errno.EINVAL, "BAR0 does not exist");
      },
    );

    t.test("interrupts: a change while enabled latches status and raises INTx until cleared", async (t) => {
      const h = await serve(transport);
      t.teardown(h.close);
      const [fd] = await h.client.enableInterrupts(PciIrq.INTX, 0, 1);
      const counters = () => h.device.irqs.counters(PciIrq.INTX, 0);

      h.gpio.setInput(2, true);
      await tick();
      t.equal(h.client.interruptCount(fd!), 0, "disabled at power-on: no interrupt");
      t.equal(await h.read8(Reg.IRQ_STATUS), 0, "and nothing latched");

      t.equal(await h.read8(Reg.IRQ_CTL), 0, "reading 0x2 enables the interrupt (reads 0)");
      t.equal(h.gpio.irqEnabled, true);
      t.equal(h.gpio.interruptAsserted, false, "enabling alone raises nothing");

      h.gpio.setInput(2, false);
      t.equal(await h.client.waitForInterrupt(fd!), 1, "a falling edge on IIN2 fires INTx once");
      t.equal(h.gpio.interruptAsserted, true);
      t.equal(await h.read8(Reg.IRQ_STATUS), IrqStatus.PENDING | IrqStatus.COS_IN0_7, "status 0x05");
      t.equal((await h.cfg(PciHeader.STATUS, 2)) & PciStatus.INTERRUPT, PciStatus.INTERRUPT);

      h.gpio.setInput(2, true);
      await tick();
      t.equal(h.client.interruptCount(fd!), 0, "automasked: a second change does not fire again");
      await unmask(h.client);
      t.equal(await h.client.waitForInterrupt(fd!), 1, "unmasking a still-asserted line fires again");

      await h.write8(Reg.IN0_7, 0);
      t.equal(await h.read8(Reg.IRQ_STATUS), 0, "a write to 0x1 clears the interrupt");
      t.equal(h.gpio.interruptAsserted, false);
      t.equal((await h.cfg(PciHeader.STATUS, 2)) & PciStatus.INTERRUPT, 0, "Status.INTx follows");
      await unmask(h.client);
      await tick();
      t.equal(h.client.interruptCount(fd!), 0, "unmasking a low line fires nothing");

      h.gpio.setInput(12, true);
      t.equal(await h.client.waitForInterrupt(fd!), 1, "IIN12 rising fires");
      t.equal(await h.read8(Reg.IRQ_STATUS), IrqStatus.PENDING | IrqStatus.COS_IN8_15, "bit 1: IIN8-15");
      h.gpio.setInput(1, true);
      t.equal(
        await h.read8(Reg.IRQ_STATUS),
        IrqStatus.PENDING | IrqStatus.COS_IN8_15 | IrqStatus.COS_IN0_7,
        "both groups latched",
      );
      t.equal(counters().signalled, 3, "three signals so far");
    });

    t.test("interrupts: writing 0x2 disables and drops the line; re-enabling raises it again", async (t) => {
      const h = await serve(transport);
      t.teardown(h.close);
      const [fd] = await h.client.enableInterrupts(PciIrq.INTX, 0, 1);
      await h.read8(Reg.IRQ_CTL);
      h.gpio.setInput(5, true);
      t.equal(await h.client.waitForInterrupt(fd!), 1);
      await h.write8(Reg.IRQ_CTL, 0);
      t.equal(h.gpio.irqEnabled, false, "write 0x2 disables");
      t.equal(h.gpio.interruptAsserted, false, "and the line drops");
      t.equal(await h.read8(Reg.IRQ_STATUS), IrqStatus.COS_IN0_7, "the latched change stays, not pending");
      h.gpio.setInput(9, true);
      t.equal(await h.read8(Reg.IRQ_STATUS), IrqStatus.COS_IN0_7, "changes while disabled are not latched");
      await unmask(h.client);
      await tick();
      t.equal(h.client.interruptCount(fd!), 0, "nothing fires while disabled");
      await h.read8(Reg.IRQ_CTL);
      t.equal(await h.client.waitForInterrupt(fd!), 1, "re-enabling with a latched change asserts INTx");
    });

    t.test("interrupts: Command.Interrupt Disable keeps the line from the client", async (t) => {
      const h = await serve(transport);
      t.teardown(h.close);
      const [fd] = await h.client.enableInterrupts(PciIrq.INTX, 0, 1);
      await h.cfgWrite(PciHeader.COMMAND, 2, PciCommand.IO | PciCommand.INTX_DISABLE);
      await h.read8(Reg.IRQ_CTL);
      h.gpio.setInput(0, true);
      await tick();
      t.equal(h.client.interruptCount(fd!), 0, "no signal while Interrupt Disable is set");
      t.equal((await h.cfg(PciHeader.STATUS, 2)) & PciStatus.INTERRUPT, PciStatus.INTERRUPT, "but pending");
      await h.cfgWrite(PciHeader.COMMAND, 2, PciCommand.IO);
      t.equal(await h.client.waitForInterrupt(fd!), 1, "clearing it delivers the interrupt");
    });

    t.test("the Linux driver's sequence: probe, unmask, one interrupt handled", async (t) => {
      // The register accesses gpio-pci-idio-16 + gpio-idio-16 + regmap-irq make (as QEMU traced
      // them): disable IRQ (twice), deactivate filters; on the first
      // unmasked line: clear, enable; in the threaded handler: status, then clear.
      const h = await serve(transport);
      t.teardown(h.close);
      const [fd] = await h.client.enableInterrupts(PciIrq.INTX, 0, 1);
      await h.cfgWrite(PciHeader.BAR2, 4, 0xc000);
      await h.cfgWrite(PciHeader.COMMAND, 2, PciCommand.IO);
      await h.write8(Reg.IRQ_CTL, 0);
      await h.write8(Reg.IRQ_CTL, 0);
      await h.write8(Reg.FILTER_CTL, 0);
      t.equal(h.gpio.filtersActive, false);
      await h.read8(Reg.FILTER_CTL);
      t.equal(h.gpio.filtersActive, true, "reading 0x3 activates the filters");
      await h.write8(Reg.FILTER_CTL, 0);
      await h.write8(Reg.IN0_7, 0);
      await h.read8(Reg.IRQ_CTL);
      h.gpio.setInput(0, true);
      t.equal(await h.client.waitForInterrupt(fd!), 1);
      const status = await h.read8(Reg.IRQ_STATUS);
      t.ok(status & IrqStatus.PENDING, "regmap-irq's test: bit 2 set");
      t.ok(status & 0x3, "the older driver's test: bit 0 or 1 set as well");
      await h.write8(Reg.IN0_7, status);
      await unmask(h.client);
      await tick();
      t.equal(h.client.interruptCount(fd!), 0, "handled: the line is low after the clear");
      t.equal(await h.read8(Reg.IN0_7), 0x01, "the driver reads IIN0 high");
    });

    t.test(
      "DEVICE_RESET: outputs off, interrupt disabled and cleared; inputs keep their levels",
      async (t) => {
        const h = await serve(transport, { inputs: "0x00f0" });
        t.teardown(h.close);
        const [fd] = await h.client.enableInterrupts(PciIrq.INTX, 0, 1);
        const seen: number[] = [];
        h.gpio.onOutputChange = (outputs) => seen.push(outputs);
        await h.write8(Reg.OUT0_7, 0xff);
        await h.read8(Reg.FILTER_CTL);
        await h.read8(Reg.IRQ_CTL);
        h.gpio.setInput(8, true);
        t.equal(await h.client.waitForInterrupt(fd!), 1);
        await h.client.reset();
        t.equal(h.gpio.outputs, 0, "outputs off");
        t.same(seen, [0x00ff, 0x0000], "the reset is reported as an output change");
        t.equal(h.gpio.irqEnabled, false, "interrupt disabled");
        t.equal(h.gpio.filtersActive, false, "filters inactive");
        t.equal(await h.read8(Reg.IRQ_STATUS), 0, "nothing latched");
        t.equal(h.gpio.interruptAsserted, false);
        t.equal(h.gpio.inputs, 0x01f0, "the field wiring still drives the inputs");
        t.equal(await h.read8(Reg.IN8_15), 0x01);
        t.equal(await h.cfg(PciHeader.BAR2, 4), 0x1, "config space back to power-on");
        h.gpio.setInput(8, false);
        await tick();
        t.equal(h.client.interruptCount(fd!), 0, "after reset a change raises nothing (disabled)");
      },
    );

    if (transport === "socket") {
      t.test("a client disconnect resets the card for the next client", async (t) => {
        const h = await serve(transport, { inputs: "0x0003" });
        t.teardown(h.close);
        await h.write8(Reg.OUT8_15, 0x80);
        await h.read8(Reg.IRQ_CTL);
        h.gpio.setInput(4, true);
        t.equal(h.gpio.interruptAsserted, true);
        await h.reconnect();
        t.equal(h.gpio.outputs, 0, "outputs off for the next client");
        t.equal(h.gpio.irqEnabled, false);
        t.equal(await h.read8(Reg.OUT8_15), 0);
        t.equal(await h.read8(Reg.IRQ_STATUS), 0);
        t.equal(await h.read8(Reg.IN0_7), 0x13, "inputs unchanged");
      });
    }
  });
}

t.test("bad --set inputs values are refused when the device is created", async (t) => {
  for (const bad of ["0x10000", "-1", "abc", "1.5", ""]) {
    t.throws(
      () =>
        new PciDevice(gpioIdio16, {
          dma: new DeviceDma(silentLogger),
          log: new SinkLogger(new MemorySink()),
          options: { inputs: bad },
        }),
      /device gpio-idio16: option inputs=.* is refused \(.*\); it takes integer 0x0-0xffff/,
      `inputs=${JSON.stringify(bad)}`,
    );
  }
});

t.test("control lines: parse", async (t) => {
  t.same(parseControlLine("input 3 1"), { kind: "input", line: 3, high: true });
  t.same(parseControlLine("  INPUT 15 low  # comment"), { kind: "input", line: 15, high: false });
  t.same(parseControlLine("input 0 on"), { kind: "input", line: 0, high: true });
  t.same(parseControlLine("inputs 0x00ff"), { kind: "inputs", levels: 0xff });
  t.same(parseControlLine("inputs 0b101"), { kind: "inputs", levels: 5 });
  t.same(parseControlLine("inputs 65535"), { kind: "inputs", levels: 0xffff });
  t.same(parseControlLine("status"), { kind: "status" });
  t.same(parseControlLine(""), { kind: "none" });
  t.same(parseControlLine("   # only a comment"), { kind: "none" });
  t.throws(() => parseControlLine("input 16 1"), /input line "16" is not 0-15/);
  t.throws(() => parseControlLine("input x 1"), /is not 0-15/);
  t.throws(() => parseControlLine("input 3"), /takes a line and a level/);
  t.throws(() => parseControlLine("input 3 2"), /level "2" is not/);
  t.throws(() => parseControlLine("inputs 0x10000"), /not an input mask/);
  t.throws(() => parseControlLine("inputs"), /takes one mask/);
  t.throws(() => parseControlLine("status now"), /takes no arguments/);
  t.throws(() => parseControlLine("output 1 1"), /unknown command "output"/);
  t.equal(parseInputMask(" 0x5 "), 5);
});

t.test("control lines: the behaviour runs them", async (t) => {
  const h = await serve("memory");
  t.teardown(h.close);
  t.equal(h.gpio.command("input 3 1"), "IIN3=1");
  t.equal(h.gpio.inputs, 0x0008);
  t.equal(h.gpio.command("inputs 0x0300"), "inputs 0x0300");
  t.equal(await h.read8(Reg.IN8_15), 0x03);
  t.equal(h.gpio.command("# nothing"), "");
  await h.write8(Reg.OUT0_7, 0x10);
  t.equal(h.gpio.command("status"), "outputs 0x0010 inputs 0x0300 irq disabled status 0x00 INTx low");
  t.ok(h.logs.lines.some((l) => l.level === "info" && l.line.startsWith("outputs 0x0010 inputs 0x0300")));
  t.throws(() => h.gpio.command("input 99 1"), /not 0-15/);
});

t.test("the control FIFO: created, read line by line from any number of writers, removed", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "vfu-idio16-ctl-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fifo = path.join(dir, "gpio.ctl");
  const h = await serve("memory", { control: fifo, inputs: "0x0100" });
  t.ok(lstatSync(fifo).isFIFO(), "the FIFO was created");
  t.equal(lstatSync(fifo).mode & 0o777, 0o600, "mode 0600");
  const [fd] = await h.client.enableInterrupts(PciIrq.INTX, 0, 1);
  await h.read8(Reg.IRQ_CTL);

  writeFileSync(fifo, "input 3 1\n");
  await waitFor(() => h.gpio.inputs === 0x0108, 2000, "input 3 1");
  t.equal(await h.read8(Reg.IN0_7), 0x08, "the client reads IIN3 high");
  t.equal(await h.client.waitForInterrupt(fd!), 1, "and the change raised INTx");

  writeFileSync(fifo, "bogus\ninputs 0x00");
  await tick(50);
  t.equal(h.gpio.inputs, 0x0108, "a line without its newline waits");
  writeFileSync(fifo, "01\nstatus\n");
  await waitFor(() => h.gpio.inputs === 0x0001, 2000, "inputs 0x0001");
  await waitFor(
    () => h.logs.lines.some((l) => l.line.startsWith("outputs 0x0000 inputs 0x0001")),
    2000,
    "status line",
  );
  t.ok(
    h.logs.lines.some((l) => l.level === "warn" && /unknown command "bogus"/.test(l.line)),
    "a bad line is a warning; the channel goes on",
  );
  await h.close();
  t.notOk(existsSync(fifo), "the FIFO the device created is gone with it");
});

t.test("the control FIFO: an existing FIFO is kept; a regular file is refused", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "vfu-idio16-ctl-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const plain = path.join(dir, "plain");
  writeFileSync(plain, "");
  t.throws(
    () =>
      new PciDevice(gpioIdio16, {
        dma: new DeviceDma(silentLogger),
        log: new SinkLogger(new MemorySink()),
        options: { control: plain },
      }),
    /exists and is not a FIFO/,
  );
  const fifo = path.join(dir, "mine.ctl");
  spawn("mkfifo", [fifo]);
  await waitFor(() => existsSync(fifo), 2000, "mkfifo");
  const h = await serve("memory", { control: fifo });
  writeFileSync(fifo, "input 15 1\n");
  await waitFor(() => h.gpio.inputs === 0x8000, 2000, "input 15 1");
  await h.close();
  t.ok(lstatSync(fifo).isFIFO(), "a FIFO given by the user stays");
});

t.test("vfu serve gpio-idio16 --set inputs=… --set control=…: driven from the command line", async (t) => {
  const srv = await startCliServer(t, "gpio-idio16", (dir) => [
    "--set",
    "inputs=0x0005",
    "--set",
    `control=${path.join(dir, "gpio.ctl")}`,
  ]);
  const fifo = path.join(srv.dir, "gpio.ctl");
  const client = await VfioUserClient.connect(srv.socketPath);
  const read8 = async (off: number) => (await client.regionRead(BAR, off, 1))[0]!;
  t.equal(await read8(Reg.IN0_7), 0x05, "IIN0 and IIN2 high from --set inputs");
  writeFileSync(fifo, "input 9 1\n");
  const end = Date.now() + 5000;
  while ((await read8(Reg.IN8_15)) !== 0x02 && Date.now() < end) await tick(20);
  t.equal(await read8(Reg.IN8_15), 0x02, "IIN9 high from the control FIFO");
  await client.regionWrite(BAR, Reg.OUT0_7, le(0x05, 1));
  await waitFor(() => srv.stderr.includes("outputs 0x0005: OUT0=1 OUT2=1"), 5000, "the output log line");
  t.match(srv.stderr, /info\s+\[gpio-idio16\] outputs 0x0005: OUT0=1 OUT2=1/, "outputs logged at info");
  t.match(srv.stderr, /inputs 0x0205: IIN9=1/, "input changes logged too");
  client.close();
  t.equal(await srv.stop(), 0, "SIGTERM stops the server cleanly");
  t.notOk(existsSync(fifo), "the FIFO is removed on exit");
});
