// The platform layer on its own: what definePlatformDevice builds from a declaration (regions,
// interrupt lines, the device-tree region and its TYPE capability), the checks it makes, the
// device-tree description and its DTS rendering (compiled by dtc when the machine has it).

import { spawnSync } from "node:child_process";
import t from "tap";
import { pl061 } from "../../devices/pl061/index.ts";
import { scratchpad } from "../../devices/scratchpad/index.ts";
import { Errno } from "../../protocol/index.ts";
import {
  createMemoryPair,
  Device,
  type DeviceDefinition,
  DeviceFlag,
  type DeviceSetup,
  definePlatformDevice,
  describeDevice,
  formatDescriptionJson,
  IrqInfoFlag,
  isPlatformDeviceDefinition,
  leValue,
  type PlatformDeviceSpec,
  RegionCapId,
  RegionFlag,
  renderDts,
  serveConnection,
  silentLogger,
  VFU_REGION_TYPE,
  VfioUserClient,
  VfuRegionSubtype,
} from "../../src/index.ts";
import { errnoOf, servePlatform, TRANSPORTS } from "./helpers.ts";

// These devices never do DMA: nothing behind the port is reached.
const setup: DeviceSetup = { log: silentLogger, dma: {} as DeviceSetup["dma"] };

/** A made-up device with two MMIO regions, grouped edge lines and a level line, a clock and one
 * property of every kind. */
function widgetSpec(overrides: Partial<PlatformDeviceSpec> = {}): PlatformDeviceSpec {
  return {
    name: "widget",
    summary: "a test widget",
    compatible: ["acme,widget-2", "acme,widget"],
    nodeName: "widget",
    mmio: [
      { name: "ctrl", size: 0x100, accessSizes: [1, 2, 4] },
      { name: "fifo", size: 0x2000, cache: "WC", memory: true },
    ],
    interrupts: [
      { name: "rx", kind: "edge", count: 3, sense: "both" },
      { name: "err", kind: "level", sense: "low" },
    ],
    clocks: [
      { name: "pclk", frequency: 100_000_000 },
      { name: "ref", frequency: 32_768 },
    ],
    properties: {
      "dma-coherent": true,
      "acme,fifo-depth": 64,
      "acme,thresholds": [1, 2, 3],
      "acme,serial": 0x1_0000_0001n,
      label: 'odd "name"\\',
      "acme,modes": ["fast", "slow"],
      "local-mac-address": new Uint8Array([0x02, 0x00, 0x00, 0xab, 0xcd, 0xef]),
    },
    create() {
      let ctrl = 0;
      return {
        regions: {
          0: {
            read: () => ctrl,
            write: (_offset, data) => {
              ctrl = leValue(data);
            },
          },
        },
      };
    },
    ...overrides,
  };
}

t.test("a declaration becomes numbered regions, interrupt indices and a DTS region", async (t) => {
  const def = definePlatformDevice(widgetSpec());
  t.ok(isPlatformDeviceDefinition(def));
  t.notOk(isPlatformDeviceDefinition(scratchpad));
  t.equal(def.bus, "platform");
  t.same(
    def.regions.map((r) => [r.index, r.name, r.size, r.cache]),
    [
      [0, "ctrl", 0x100, "UC"],
      [1, "fifo", 0x2000, "WC"],
      [2, "device-tree", new TextEncoder().encode(def.dts).length, undefined],
    ],
  );
  t.equal(def.regions[2]!.writable, false);
  t.same(
    def.irqs.map((i) => [i.index, i.name, i.count, i.kind, i.maskable]),
    [
      [0, "rx", 3, "edge", true],
      [1, "err", 1, "level", true],
    ],
  );
  t.equal(def.description.deviceTreeRegion, 2);
  t.same(def.regionCaps!(2), [
    { id: RegionCapId.TYPE, version: 1, type: VFU_REGION_TYPE, subtype: VfuRegionSubtype.DEVICE_TREE },
  ]);
  t.same(def.regionCaps!(0), []);
  t.equal(def.dts, renderDts(def.description));
});

t.test("a plain Device built from the definition (what `vfu serve` does) serves the same", async (t) => {
  const dev = new Device(pl061, setup);
  t.teardown(() => dev.dispose());
  t.equal(dev.flags, DeviceFlag.PLATFORM | DeviceFlag.RESET);
  t.equal(dev.numRegions, 2);
  t.same(dev.regionCaps(1), [
    { id: RegionCapId.TYPE, version: 1, type: VFU_REGION_TYPE, subtype: VfuRegionSubtype.DEVICE_TREE },
  ]);
  const bytes = await dev.read(1, 0n, dev.region(1)!.size);
  t.equal(new TextDecoder().decode(bytes), pl061.dts);
  t.equal(await errnoOf((async () => dev.write(1, 0n, new Uint8Array(4)))()), Errno.EINVAL, "read-only");
});

t.test("the DTS renders every property kind, the lines and the clocks", async (t) => {
  const def = definePlatformDevice(widgetSpec());
  const dts = def.dts;
  t.match(dts, /^\/dts-v1\/;\n/);
  t.match(dts, /\twidget@0,0 \{\n/, "unit address: region 0, offset 0");
  t.match(dts, /compatible = "acme,widget-2", "acme,widget";/);
  t.match(dts, /reg = <0x0 0x0 0x100>, <0x1 0x0 0x2000>;/);
  t.match(dts, /reg-names = "ctrl", "fifo";/);
  t.match(dts, /\/\* ctrl: region 0, 256 bytes, 1\/2\/4-byte accesses, UC, read\/write \*\//);
  t.match(dts, /\/\* fifo: region 1, 8192 bytes, any access width, WC, read\/write \*\//);
  t.match(dts, /interrupts = <0 0 3>, <0 1 3>, <0 2 3>, <1 0 8>;/, "both edges = 3, active low = 8");
  t.match(dts, /interrupt-names = "rx0", "rx1", "rx2", "err";/);
  t.match(dts, /clocks = <&clk_pclk>, <&clk_ref>;/);
  t.match(dts, /clock-names = "pclk", "ref";/);
  t.match(dts, /clk_ref: clock-ref \{[^}]*clock-frequency = <32768>;/);
  t.match(dts, /\tdma-coherent;\n/);
  t.match(dts, /acme,fifo-depth = <64>;/);
  t.match(dts, /acme,thresholds = <1 2 3>;/);
  t.match(dts, /acme,serial = \/bits\/ 64 <0x100000001>;/);
  t.match(dts, /label = "odd \\"name\\"\\\\";/);
  t.match(dts, /acme,modes = "fast", "slow";/);
  t.match(dts, /local-mac-address = \[02 00 00 ab cd ef\];/);
  t.equal(renderDts(def.description), dts, "rendering is deterministic");

  const dtc = spawnSync("dtc", ["--version"], { encoding: "utf8" });
  if (dtc.error) {
    t.comment("dtc is not installed: the DTS is not compiled");
    return;
  }
  for (const text of [dts, pl061.dts, renderDts(describeDevice(scratchpad))]) {
    const r = spawnSync("dtc", ["-I", "dts", "-O", "dtb", "-o", "/dev/null", "-"], {
      input: text,
      encoding: "utf8",
    });
    t.equal(r.status, 0, `dtc compiles it${r.status ? `: ${r.stderr}` : ""}`);
  }
});

t.test("declarations that cannot be described are refused with a reason", async (t) => {
  const bad: Array<[string, Partial<PlatformDeviceSpec>, RegExp]> = [
    ["no compatible", { compatible: [] }, /compatible is empty/],
    ["empty compatible", { compatible: [""] }, /empty compatible/],
    ["NUL in compatible", { compatible: ["a\0b"] }, /NUL/],
    ["a node name with a space", { nodeName: "my widget" }, /node name/],
    ["a generated property", { properties: { reg: [1] } }, /written by the platform layer/],
    ["a bad property name", { properties: { "no spaces": true } }, /property name/],
    ["a non-cell number", { properties: { x: 2 ** 32 } }, /32-bit cell/],
    ["a negative cell", { properties: { x: [-1] } }, /32-bit cell/],
    ["a too-large bigint", { properties: { x: 1n << 64n } }, /64-bit/],
    ["a mixed list", { properties: { x: [1, "a"] as unknown as number[] } }, /mixes/],
    ["an empty list", { properties: { x: [] } }, /empty list/],
    [
      "an edge line with a level sense",
      { interrupts: [{ name: "x", kind: "edge", sense: "high" }] },
      /cannot have sense/,
    ],
    [
      "a level line with an edge sense",
      { interrupts: [{ name: "x", kind: "level", sense: "both" }] },
      /cannot have sense/,
    ],
    ["zero lines", { interrupts: [{ name: "x", kind: "edge", count: 0 }] }, /positive integer/],
    [
      "a clock twice",
      {
        clocks: [
          { name: "a", frequency: 1 },
          { name: "a", frequency: 2 },
        ],
      },
      /twice/,
    ],
    ["a clock with a bad name", { clocks: [{ name: "a b", frequency: 1 }] }, /clock name/],
    ["a bad frequency", { clocks: [{ name: "a", frequency: 1.5 }] }, /frequency/],
    ["a bad device name", { name: "Widget" }, /kebab-case/],
  ];
  for (const [what, overrides, message] of bad) {
    t.throws(() => definePlatformDevice(widgetSpec(overrides)), message, what);
  }
  const stealsDt = definePlatformDevice(
    widgetSpec({ create: () => ({ regions: { 2: { read: () => 0 } } }) }),
  );
  t.throws(() => new Device(stealsDt, setup), /device-tree region/, "handlers for the DTS region");
});

t.test("describeDevice", async (t) => {
  const d = describeDevice(pl061);
  t.same(d.compatible, ["arm,pl061", "arm,primecell"]);
  t.equal(d.nodeName, "gpio");
  t.same(d.reg, [
    { name: "regs", region: 0, size: 0x1000, accessSizes: [4], cache: "UC", readable: true, writable: true },
  ]);
  t.same(d.interrupts, [{ name: "gpio", index: 0, vector: 0, kind: "level", sense: "high" }]);
  t.same(d.clocks, [{ name: "apb_pclk", frequency: 24_000_000 }]);
  t.equal(d.deviceTreeRegion, 1);
  d.compatible.push("mutated");
  t.equal(renderDts(describeDevice(pl061)), pl061.dts, "the caller's copy does not change the served text");

  const s = describeDevice(scratchpad);
  t.same(s.compatible, ["vfio-user-node,scratchpad"], "a plain platform definition gets a derived node");
  t.same(
    s.reg.map((r) => [r.name, r.region, r.cache]),
    [
      ["regs", 0, "UC"],
      ["mem", 1, "WB"],
    ],
  );
  t.same(
    s.interrupts.map((i) => `${i.name}/${i.index}/${i.vector}/${i.sense}`),
    [
      "events0/0/0/rising",
      "events1/0/1/rising",
      "events2/0/2/rising",
      "events3/0/3/rising",
      "level/1/0/high",
    ],
  );
  t.equal(s.deviceTreeRegion, null);

  const pci: DeviceDefinition = { ...scratchpad, name: "some-pci", bus: "pci" };
  t.throws(() => describeDevice(pci), /PCI device: its config space describes it/);

  const json = JSON.parse(formatDescriptionJson(describeDevice(definePlatformDevice(widgetSpec()))));
  t.equal(json.properties["acme,serial"], "0x100000001", "bigints as hex strings");
  t.same(json.properties["local-mac-address"], [2, 0, 0, 0xab, 0xcd, 0xef], "bytes as numbers");
});

for (const transport of TRANSPORTS) {
  t.test(`a declared device over ${transport}: infos, widths, alignment, DTS`, async (t) => {
    const def = definePlatformDevice(widgetSpec());
    const h = await servePlatform(def, transport);
    t.teardown(h.close);
    const { client } = h;
    const info = await client.getDeviceInfo();
    t.equal(info.flags, DeviceFlag.PLATFORM | DeviceFlag.RESET);
    t.equal(info.numRegions, 3);
    t.equal(info.numIrqs, 2);
    const rx = await client.getIrqInfo(0);
    t.same([rx.count, rx.flags], [3, IrqInfoFlag.EVENTFD | IrqInfoFlag.MASKABLE], "edge lines: maskable");
    const err = await client.getIrqInfo(1);
    t.same(
      [err.count, err.flags],
      [1, IrqInfoFlag.EVENTFD | IrqInfoFlag.MASKABLE | IrqInfoFlag.AUTOMASKED],
      "level line: automasked",
    );
    const fifo = await client.getRegionInfo(1);
    t.equal(fifo.size, 0x2000n);
    t.equal(fifo.flags & (RegionFlag.READ | RegionFlag.WRITE), RegionFlag.READ | RegionFlag.WRITE);
    t.equal(fifo.caps.filter((c) => c.id === RegionCapId.TYPE).length, 0, "only the DTS region is typed");
    t.equal((await client.findRegionByType(VFU_REGION_TYPE, VfuRegionSubtype.DEVICE_TREE))?.index, 2);
    t.equal(await client.readDeviceTree(), def.dts);

    await client.regionWrite(0, 2, new Uint8Array([0x34, 0x12]));
    t.same([...(await client.regionRead(0, 2, 2))], [0x34, 0x12], "a declared 2-byte access, aligned");
    t.equal(await errnoOf(client.regionRead(0, 1, 2)), Errno.EINVAL, "a 2-byte access at an odd offset");
    t.equal(await errnoOf(client.regionRead(0, 2, 4)), Errno.EINVAL, "a 4-byte access at offset 2");
    t.equal(await errnoOf(client.regionRead(0, 0, 8)), Errno.EINVAL, "an undeclared width");
    t.equal((await client.regionRead(0, 3, 1)).length, 1, "bytes go anywhere");
  });
}

t.test("a device without a DTS region: readDeviceTree answers null", async (t) => {
  const [a, b] = createMemoryPair();
  const session = serveConnection(b, (dma, log) => new Device(scratchpad, { dma, log }));
  const client = await VfioUserClient.over(a);
  t.teardown(async () => {
    client.close();
    await session.ended;
    session.device.dispose();
  });
  t.equal(await client.readDeviceTree(), null);
});
