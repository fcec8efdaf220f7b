// Golden config spaces: each PCI device model's config space is dumped in the `lspci -x` format
// and decoded by Debian's `lspci -vvv -F`, and the decoding must equal the committed expectation
// in test/fixtures/pci/<name>.txt (names from test/fixtures/pci/pci.ids, not the host's).
// Every PCI model registered in devices/index.ts gets a golden of its power-on config space here
// (or in a test of its own, with a fixture <name>.lspci.txt); a model with neither fails with the
// command that writes it. pci-testdev has a second golden in the
// state firmware and a driver leave it (BARs assigned, decoding and MSI-X enabled).
//
// lspci comes from Debian's pciutils: when missing, this test installs it with apt-get (we run
// as root); it skips only when apt-get itself is unavailable.
// Regenerate after an intended change, all or some by name:
//   UPDATE_GOLDEN=1 npx tap test/pci/lspci.test.ts
//   UPDATE_GOLDEN=pci-testdev,pci-testdev-configured npx tap test/pci/lspci.test.ts
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t, { type Test } from "tap";
import { deviceModels } from "../../devices/index.ts";
import { Reg } from "../../devices/pci-testdev/index.ts";
import {
  dumpConfigSpace,
  formatLspciDump,
  MsiControl,
  MsixControl,
  PciCommand,
  PciDevice,
  type PciDeviceDefinition,
  PciStatus,
  silentLogger,
} from "../../src/index.ts";
import { DeviceDma } from "../../src/iommu/dma.ts";

const fixtures = fileURLToPath(new URL("../fixtures/pci/", import.meta.url));
const idsFile = path.join(fixtures, "pci.ids");
const updateList = (process.env.UPDATE_GOLDEN ?? "").split(",");
const update = (name: string) => updateList.includes("1") || updateList.includes(name);

function which(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

/** Make sure lspci exists; returns why not when it cannot be had. */
function ensureLspci(): string | null {
  if (which("lspci")) return null;
  if (!which("apt-get")) return "lspci is missing and apt-get is unavailable to install pciutils";
  const run = (args: string[]) =>
    spawnSync("apt-get", args, {
      stdio: "ignore",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
  if (run(["install", "-y", "-q", "pciutils"]).status !== 0) {
    run(["update", "-q"]);
    run(["install", "-y", "-q", "pciutils"]);
  }
  if (!which("lspci")) throw new Error("apt-get could not install pciutils (lspci)");
  return null;
}

function lspci(dump: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), "vfu-lspci-"));
  try {
    const file = path.join(dir, "dump.txt");
    writeFileSync(file, dump);
    const r = spawnSync("lspci", ["-vvv", "-F", file, "-i", idsFile], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`lspci failed (${r.status}): ${r.stderr}`);
    return r.stdout; // stderr carries libkmod noise in containers
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function build(def: PciDeviceDefinition): PciDevice {
  return new PciDevice(def, { dma: new DeviceDma(silentLogger), log: silentLogger });
}

function golden(t: Test, name: string, actual: string): void {
  const file = path.join(fixtures, `${name}.txt`);
  if (update(name)) {
    writeFileSync(file, actual);
    t.pass(`wrote ${name}.txt`);
    return;
  }
  if (!existsSync(file)) {
    t.fail(
      `no golden test/fixtures/pci/${name}.txt: review this output, then run UPDATE_GOLDEN=${name} npx tap test/pci/lspci.test.ts (names for its IDs go in test/fixtures/pci/pci.ids)\n${actual}`,
    );
    return;
  }
  t.equal(actual, readFileSync(file, "utf8"), `lspci -vvv of ${name} matches ${name}.txt`);
}

t.test("the dump format lspci -F reads", async (t) => {
  const bytes = new Uint8Array(256);
  bytes[0] = 0x34;
  bytes[0xff] = 0xab;
  const text = formatLspciDump(bytes, { slot: "00:03.0", title: "x" });
  const lines = text.trimEnd().split("\n");
  t.equal(lines.length, 17);
  t.equal(lines[0], "00:03.0 x");
  t.equal(lines[1], "00: 34 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00");
  t.equal(lines[16], "f0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ab");
  const big = formatLspciDump(new Uint8Array(4096)).split("\n");
  t.equal(big[256], "ff0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00", "PCIe rows past 0xff");
  t.throws(() => formatLspciDump(bytes, { slot: "0:3" }), /bus:dev.fn/);
});

const missing = ensureLspci();

t.test("golden lspci -vvv of every PCI device model", { skip: missing ?? false }, async (t) => {
  const models = deviceModels.filter((d): d is PciDeviceDefinition => d.bus === "pci" && "pci" in d);
  t.ok(
    models.some((d) => d.name === "pci-testdev"),
    "pci-testdev is registered",
  );
  for (const def of models) {
    // A model may keep its own golden test instead (fixture <name>.lspci.txt, e.g. gpio-idio16's
    // test/pci/lspci-gpio.test.ts with its own pci.ids): then that test is its slot.
    if (existsSync(path.join(fixtures, `${def.name}.lspci.txt`))) {
      t.pass(`${def.name} has its own golden test (${def.name}.lspci.txt)`);
      continue;
    }
    const dev = build(def);
    try {
      golden(t, def.name, lspci(await dumpConfigSpace(dev)));
    } finally {
      dev.dispose();
    }
  }
});

t.test(
  "golden lspci -vvv of pci-testdev as firmware and a driver leave it",
  { skip: missing ?? false },
  async (t) => {
    const def = deviceModels.find((d) => d.name === "pci-testdev") as PciDeviceDefinition;
    const dev = build(def);
    t.teardown(() => dev.dispose());
    const cfg = (offset: number, size: number, value: number) => {
      const b = new Uint8Array(size);
      for (let i = 0; i < size; i++) b[i] = (value >>> (8 * i)) & 0xff;
      return dev.write(7, BigInt(offset), b);
    };
    await cfg(0x10, 4, 0xfe00_0000); // BAR0
    await cfg(0x14, 4, 0xc000); // BAR1 (I/O)
    // BAR2/3 below 4 GiB: lspci 3.9 decoding a dump lists a non-zero upper half as a BAR of its own.
    await cfg(0x18, 4, 0xfd00_0000);
    await cfg(0x1c, 4, 0);
    await cfg(0x20, 4, 0xfe00_2000); // BAR4/5
    await cfg(0x24, 4, 0);
    await cfg(0x30, 4, 0xfe04_0000); // ROM address, decode disabled
    await cfg(0x3c, 1, 11); // Interrupt Line
    await cfg(0x04, 2, PciCommand.IO | PciCommand.MEMORY | PciCommand.MASTER | PciCommand.INTX_DISABLE);
    await cfg(0x4c, 4, 0xfee0_0000); // MSI address
    await cfg(0x54, 2, 0x4021); // MSI data
    await cfg(0x58, 4, 0b1000); // MSI vector 3 masked
    await cfg(0x4a, 2, MsiControl.MME_MASK & (2 << 4)); // 4 vectors chosen, MSI off
    await cfg(0x62, 2, MsixControl.ENABLE);
    await cfg(0x6c + 8, 2, 0x2830 | 0x000f); // DevCtl: MPS 256, every error report on
    await cfg(0x6c + 0x10, 2, 0x0040); // LnkCtl: common clock
    // The function reports a received master abort (RW1C in Status).
    await dev.write(0, BigInt(Reg.STATUS_SET), new Uint8Array([0, PciStatus.REC_MASTER_ABORT >> 8, 0, 0]));
    golden(t, "pci-testdev-configured", lspci(await dumpConfigSpace(dev)));
  },
);
