// nvme: an NVM Express 1.4 controller with one namespace backed by a raw image file, for the
// guest's own nvme driver. PCI class 01:08:02 (NVMe), BAR0 the controller registers and doorbells
// (16 KiB, 4/8-byte accesses), BAR4 the MSI-X table and PBA (one vector per completion queue),
// INTx when MSI-X is off, PCI Express with FLR.
//
// The files, by entity: spec.ts (register offsets, opcodes, status codes), controller.ts (CC/CSTS
// state machine, doorbells, the pump, interrupts), queues.ts (rings, phase tags), admin.ts,
// io.ts, prp-sgl.ts (data pointers), namespace.ts (the file). Register and command tables:
// README.md beside this file.
//
// Options (`--set key=value`): disk (image path; default: a temporary file removed at dispose),
// size (created/extended to it when smaller, e.g. 64M), lba (512 or 4096), dstrd (doorbell
// stride 4 << dstrd bytes, 0-4), queues (I/O queue pairs, 1-16).
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { definePciDevice, type PciDevice, type PciFunctionApi } from "../../src/index.ts";
import { NvmeController } from "./controller.ts";
import { Namespace } from "./namespace.ts";

export const NVME_IDS = {
  vendor: 0x1234,
  device: 0x4e56, // "VN"
  subsystemVendor: 0x1234,
  subsystem: 0x0001,
  classCode: 0x010802, // mass storage, non-volatile memory, NVM Express
  revision: 0x01,
} as const;

export const NvmeBars = { REGS: 0, MSIX: 4 } as const;
export const MAX_IO_QUEUES = 16;
export const NVME_VECTORS = MAX_IO_QUEUES + 1;
export const MAX_QUEUE_ENTRIES = 1024;

const controllers = new WeakMap<PciFunctionApi, NvmeController>();

/** The controller of a served nvme device (its namespace, counters). Throws for other devices. */
export function nvmeOf(device: PciDevice): NvmeController {
  const c = controllers.get(device.pci);
  if (!c) throw new Error(`${device.name} is not an nvme device`);
  return c;
}

/** "64M", "1G", "4096" → bytes. Throws on anything else. */
export function parseSize(text: string): number {
  const m = /^(\d+)([KMGT]?)i?B?$/i.exec(text.trim());
  if (!m) throw new Error(`nvme: size "${text}" is not a number with an optional K/M/G/T suffix`);
  const unit = { "": 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[m[2]!.toUpperCase()]!;
  return Number(m[1]) * unit;
}

function intOption(text: string, name: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new Error(`nvme: ${name}=${text} must be an integer ${min}-${max}`);
  return n;
}

let tempDisks = 0;

export const nvme = definePciDevice({
  name: "nvme",
  summary: "NVMe 1.4 controller, one namespace on a raw image file (--set disk=, size=, lba=)",
  ids: NVME_IDS,
  bars: [
    { index: NvmeBars.REGS, kind: "memory", size: 0x4000, is64: true, accessSizes: [4, 8], name: "regs" },
    { index: NvmeBars.MSIX, kind: "memory", size: 0x1000, is64: true, accessSizes: [4, 8], name: "msix" },
  ],
  capabilities: {
    pm: { noSoftReset: false },
    msix: { vectors: NVME_VECTORS, bar: NvmeBars.MSIX, tableOffset: 0, pbaOffset: 0x800 },
    express: { maxPayload: 256, flr: true, linkSpeed: 3, linkWidth: 4 },
  },
  interrupts: { intx: true },
  options: {
    disk: { description: "raw image file (created when missing); default: a temporary file" },
    size: { description: "create/extend the image to this size (e.g. 64M)", default: "64M" },
    lba: { description: "logical block size: 512 or 4096", default: "512" },
    dstrd: { description: "doorbell stride: 4 << dstrd bytes (0-4)", default: "0" },
    queues: { description: `I/O queue pairs offered (1-${MAX_IO_QUEUES})`, default: "8" },
    holdpoll: {
      description:
        "on: after a burst, poll the shadow tail one timer tick before asking for an MMIO doorbell",
      default: "on",
    },
    syncio: {
      description:
        "on: Reads/Writes up to 128 KiB run synchronously on the event loop; off: all on the libuv pool",
      default: "on",
    },
  },
  create(ctx) {
    const o = ctx.options;
    const lbaText = o.lba ?? "512";
    const lba = lbaText === "4096" ? 4096 : lbaText === "512" ? 512 : null;
    if (lba === null) throw new Error(`nvme: lba=${lbaText} must be 512 or 4096`);
    const dstrd = intOption(o.dstrd ?? "0", "dstrd", 0, 4);
    const queues = intOption(o.queues ?? "8", "queues", 1, MAX_IO_QUEUES);
    const temp = !o.disk;
    const disk = o.disk || path.join(tmpdir(), `vfu-nvme-${process.pid}-${++tempDisks}.img`);
    const syncio = o.syncio ?? "on";
    if (syncio !== "on" && syncio !== "reads" && syncio !== "off")
      throw new Error(`nvme: syncio=${syncio} must be on, reads or off`);
    const holdpoll = o.holdpoll ?? "on";
    if (holdpoll !== "on" && holdpoll !== "off")
      throw new Error(`nvme: holdpoll=${holdpoll} must be on or off`);
    const ns = new Namespace({ path: disk, size: parseSize(o.size ?? "64M"), lbaSize: lba });
    ns.syncIo = syncio;
    const c = new NvmeController(ctx, ns, {
      dstrd,
      maxQueueEntries: MAX_QUEUE_ENTRIES,
      maxIoQueues: queues,
      vectors: NVME_VECTORS,
      holdPoll: holdpoll === "on",
    });
    controllers.set(ctx.pci, c);
    ctx.log.info(`nvme: ${disk}: ${ns.blocks} blocks of ${lba} bytes, ${queues} I/O queues, dstrd ${dstrd}`);
    return {
      bars: {
        [NvmeBars.REGS]: {
          read: (offset, size) => c.readRegister(offset, size),
          write: (offset, data) => c.writeRegister(offset, data),
        },
      },
      reset: () => c.reset(),
      dispose() {
        // The counters, once, as JSON on one info line: a `vfu serve` process reports what it did
        // (the guest benchmark runs the server as its own process and reads this line at exit).
        const { syncTransfers, slowSyncTransfers } = ns.stats;
        ctx.log.info(`nvme: counters ${JSON.stringify({ ...c.counters, syncTransfers, slowSyncTransfers })}`);
        c.dispose();
        ns.close();
        if (temp) rmSync(disk, { force: true });
      },
    };
  },
});
