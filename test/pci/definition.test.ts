// definePciDevice checks a declaration when the device is defined: each mistake is an Error
// naming the field, before any client connects.
import t from "tap";
import { pciTestdev } from "../../devices/pci-testdev/index.ts";
import { definePciDevice, PciDevice, type PciDeviceSpec, silentLogger } from "../../src/index.ts";
import { DeviceDma } from "../../src/iommu/dma.ts";

const base: PciDeviceSpec = {
  name: "decl",
  summary: "declaration checks",
  ids: { vendor: 0x1234, device: 0x10, classCode: 0xff0000 },
  create: () => ({}),
};
const define = (over: Partial<PciDeviceSpec>) => () => definePciDevice({ ...base, ...over });

t.test("BAR declarations", async (t) => {
  t.throws(define({ bars: [{ kind: "memory", size: 3000 }] }), /power of two/);
  t.throws(define({ bars: [{ kind: "memory", size: 8 }] }), /from 16 bytes/);
  t.throws(define({ bars: [{ kind: "io", size: 2 }] }), /I\/O size 2/);
  t.throws(define({ bars: [{ kind: "io", size: 512 }] }), /4 to 256/);
  t.throws(define({ bars: [{ kind: "memory", size: 2 ** 32 }] }), /declare is64/);
  t.throws(define({ bars: [{ kind: "io", size: 16, is64: true }] }), /only memory BARs can be 64-bit/);
  t.throws(define({ bars: [{ kind: "io", size: 16, prefetchable: true }] }), /cannot be prefetchable/);
  t.throws(define({ bars: [{ index: 1, kind: "memory", size: 16, is64: true }] }), /even index/);
  t.throws(define({ bars: [{ index: 5, kind: "memory", size: 16, is64: true }] }), /even index/);
  t.throws(
    define({
      bars: [
        { index: 0, kind: "memory", size: 16, is64: true },
        { index: 1, kind: "memory", size: 16 },
      ],
    }),
    /64-bit partner/,
    "the partner of a 64-bit BAR is unusable",
  );
  t.throws(define({ bars: [{ index: 6, kind: "memory", size: 16 }] }), /index must be 0-5/);
  t.throws(define({ bars: [{ kind: "memory", size: 16, memory: true }] }), /multiple of 4096/);
  t.throws(define({ bars: [{ kind: "memory", size: 4096, mmap: true }] }), /mmap needs memory/);
  t.throws(define({ bars: [{ kind: "memory", size: 16, accessSizes: [3 as 1] }] }), /access size 3/);
  t.throws(define({ rom: { data: new Uint8Array(16), size: 1024 } }), /rom.size 1024/);
  t.throws(define({ rom: { data: new Uint8Array(5000), size: 4096 } }), /exceeds rom.size/);
  const auto = definePciDevice({
    ...base,
    bars: [
      { kind: "memory", size: 16 },
      { kind: "memory", size: 16, is64: true },
      { kind: "io", size: 4 },
    ],
    rom: { data: new Uint8Array(3000) },
  });
  t.same(
    auto.pci.bars.map((b) => b?.index),
    [0, undefined, 2, undefined, 4],
    "unindexed BARs take the next free slot; a 64-bit one the next even pair",
  );
  t.equal(auto.pci.rom?.size, 4096, "ROM size rounded up to a power of two");
});

t.test("IDs and capabilities", async (t) => {
  t.throws(define({ ids: { ...base.ids, vendor: 0xffff } }), /reserved/);
  t.throws(define({ ids: { ...base.ids, device: 0x10000 } }), /ids.device/);
  t.throws(define({ ids: { ...base.ids, classCode: 0x1000000 } }), /24-bit/);
  t.throws(define({ capabilities: { msi: { vectors: 3 } } }), /msi.vectors 3/);
  t.throws(define({ capabilities: { msix: { vectors: 4, bar: 0 } } }), /not a declared BAR/);
  t.throws(
    define({ bars: [{ kind: "io", size: 64 }], capabilities: { msix: { vectors: 4, bar: 0 } } }),
    /memory BAR, not I\/O/,
  );
  t.throws(
    define({ bars: [{ kind: "memory", size: 32 }], capabilities: { msix: { vectors: 4, bar: 0 } } }),
    /does not fit in BAR 0/,
  );
  t.throws(
    define({
      bars: [{ kind: "memory", size: 4096 }],
      capabilities: { msix: { vectors: 4, bar: 0, tableOffset: 0, pbaOffset: 0x30 } },
    }),
    /overlap/,
  );
  t.throws(
    define({
      bars: [{ kind: "memory", size: 4096, memory: true, mmap: true }],
      capabilities: { msix: { vectors: 4, bar: 0 } },
    }),
    /cannot be mmap-capable/,
  );
  t.throws(define({ capabilities: { dsn: { serial: 1n } } }), /need capabilities.express/);
  t.throws(define({ capabilities: { express: { maxPayload: 100 } } }), /maxPayload 100/);
  t.throws(define({ capabilities: { pm: { offset: 0x42 } } }), /4-byte aligned/);
  t.throws(
    define({ capabilities: { pm: { offset: 0x40 }, msi: { vectors: 1, offset: 0x44 } } }),
    /overlaps pm/,
  );
  t.throws(
    define({ capabilities: { express: {}, dsn: { serial: 1n, offset: 0x200 } } }),
    /first extended capability must sit at 0x100/,
  );
  t.throws(define({ capabilities: { vendor: { data: new Uint8Array(300) } } }), /exceeds 252/);
  t.throws(define({ name: "Not Kebab" }), /kebab-case/);
});

t.test("pinned capability offsets build a list in address order", async (t) => {
  const def = definePciDevice({
    ...base,
    capabilities: {
      pm: { offset: 0xc0 },
      msi: { vectors: 2 },
      vendor: [{ data: [1] }, { data: [2], offset: 0x80 }],
    },
  });
  const caps = def.pci.capabilities.map((c) => [c.kind, c.offset, c.next]);
  t.same(caps, [
    ["pm", 0xc0, 0],
    ["msi", 0x40, 0x50],
    ["vendor", 0x50, 0x80],
    ["vendor", 0x80, 0xc0],
  ]);
  t.equal(def.pci.configSize, 256, "no Express: conventional 256-byte config space");
});

t.test("the definition is an ordinary DeviceDefinition with 9 regions and 5 irq indices", async (t) => {
  t.equal(pciTestdev.bus, "pci");
  t.same(
    pciTestdev.regions.map((r) => r.index),
    [0, 1, 2, 3, 4, 5, 6, 7, 8],
  );
  t.same(
    pciTestdev.irqs.map((i) => [i.name, i.count]),
    [
      ["intx", 1],
      ["msi", 4],
      ["msix", 8],
      ["err", 1],
      ["req", 1],
    ],
  );
  const bad = definePciDevice({ ...base, create: () => ({ bars: { 2: {} } }) });
  t.throws(
    () => new PciDevice(bad, { dma: new DeviceDma(silentLogger), log: silentLogger }),
    /undeclared BAR 2/,
    "handlers for an undeclared BAR are refused when the device is built",
  );
});
