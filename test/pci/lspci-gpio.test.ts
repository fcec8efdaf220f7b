// Golden config space of gpio-idio16 (the ACCES PCI-IDIO-16): the device's config space, read the
// way QEMU reads it (one 256-byte REGION_READ), is dumped in the format `lspci -F` reads, and
// Debian's own `lspci -vvv -F` decodes it; the output must equal the committed expectation.
// Two states: power-on, and after a driver's set-up (BAR2 assigned at 0xc000, I/O decode on,
// Interrupt Line 10, the card's interrupt enabled with an input change pending: Status INTx+).
// The raw power-on bytes are pinned too, so a change lspci does not decode still shows. Names come
// from test/fixtures/pci/gpio-idio16.pci.ids, not the host's pci.ids.
//
// After a deliberate change: UPDATE_GOLDEN=1 npx tap test/pci/lspci-gpio.test.ts rewrites the
// fixtures; review the diff.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t, { type Test } from "tap";
import { gpioIdio16, IDIO16_BAR, type Idio16Behaviour, Reg } from "../../devices/gpio-idio16/index.ts";
import {
  DeviceDma,
  dumpConfigSpace,
  PciCommand,
  PciDevice,
  PciHeader,
  PciRegion,
  silentLogger,
} from "../../src/index.ts";

const fixtures = fileURLToPath(new URL("../fixtures/pci/", import.meta.url));
const idsFile = path.join(fixtures, "gpio-idio16.pci.ids");
const update = process.env.UPDATE_GOLDEN === "1";

function le(value: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (value >>> (8 * i)) & 0xff;
  return out;
}

function golden(t: Test, name: string, actual: string): void {
  const file = path.join(fixtures, name);
  if (update) writeFileSync(file, actual);
  if (!existsSync(file)) {
    t.fail(`no golden test/fixtures/pci/${name}: review this, then run with UPDATE_GOLDEN=1\n${actual}`);
    return;
  }
  t.equal(actual, readFileSync(file, "utf8"), `matches test/fixtures/pci/${name}`);
}

function lspci(dump: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), "vfu-lspci-"));
  try {
    const file = path.join(dir, "config.txt");
    writeFileSync(file, dump);
    const r = spawnSync("lspci", ["-vvv", "-F", file, "-i", idsFile], {
      encoding: "utf8",
      env: { ...process.env, LC_ALL: "C" },
    });
    if (r.error || r.status !== 0) throw new Error(`lspci failed (${r.status}): ${r.error ?? r.stderr}`);
    return r.stdout; // stderr carries libkmod noise in containers
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function newDevice(): PciDevice<Idio16Behaviour> {
  return new PciDevice(gpioIdio16, { dma: new DeviceDma(silentLogger), log: silentLogger });
}

const haveLspci = spawnSync("sh", ["-c", "command -v lspci"], { stdio: "ignore" }).status === 0;

if (!haveLspci) {
  t.skip("lspci golden tests: lspci is missing (apt-get install pciutils)", () => {});
} else {
  t.test("power-on config space", async (t) => {
    const dev = newDevice();
    t.teardown(() => dev.dispose());
    const dump = await dumpConfigSpace(dev, { slot: "00:01.0" });
    golden(t, "gpio-idio16.config.txt", dump);
    const out = lspci(dump);
    golden(t, "gpio-idio16.lspci.txt", out);
    t.match(out, /^00:01\.0 Signal processing controller: ACCES I\/O Products/m, "class and vendor decoded");
    t.match(out, /Region 2: I\/O ports at <unassigned> \[disabled\]/, "one I/O BAR, BAR2, unassigned");
    t.notMatch(out, /Region [013-5]:/, "no other BAR");
    t.match(out, /Interrupt: pin A/, "INTA#");
    t.notMatch(out, /Capabilities:/, "no capability list");
  });

  t.test("after a driver's set-up, with an interrupt pending", async (t) => {
    const dev = newDevice();
    t.teardown(() => dev.dispose());
    const cfg = (offset: number, size: number, value: number) =>
      dev.write(PciRegion.CONFIG, BigInt(offset), le(value, size));
    await cfg(PciHeader.BAR2, 4, 0xffffffff); // sizing, as the kernel does it
    await cfg(PciHeader.BAR2, 4, 0xc000);
    await cfg(PciHeader.INTERRUPT_LINE, 1, 10);
    await cfg(PciHeader.COMMAND, 2, PciCommand.IO);
    await dev.read(IDIO16_BAR, BigInt(Reg.IRQ_CTL), 1); // reading 0x2 enables the card's IRQ
    dev.behaviour.setInput(7, true);
    const out = lspci(await dumpConfigSpace(dev, { slot: "00:01.0" }));
    golden(t, "gpio-idio16-configured.lspci.txt", out);
    t.match(out, /Control: I\/O\+ Mem- BusMaster-/, "I/O decode on");
    t.match(out, /INTx\+/, "Status shows the pending INTx");
    t.match(out, /Interrupt: pin A routed to IRQ 10/);
    t.match(out, /Region 2: I\/O ports at c000\n/, "BAR2 at 0xc000");
  });
}
