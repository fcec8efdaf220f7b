// nvme: an NVM Express 1.4 controller with one namespace backed by a raw image file, for the
// guest's own nvme driver. PCI class 01:08:02 (NVMe), BAR0 the controller registers and doorbells
// (16 KiB, 4/8-byte accesses), BAR4 the MSI-X table and PBA (one vector per completion queue),
// INTx when MSI-X is off, PCI Express with FLR.
//
// The files, by entity: spec.ts (register offsets, opcodes, status codes), controller.ts (CC/CSTS
// state machine, doorbells, completion posting), pump.ts (command fetch), interrupts.ts,
// shadow.ts (shadow doorbells), queues.ts (rings, phase tags), admin.ts, io.ts, prp-sgl.ts and
// page-lists.ts (data pointers), namespace.ts (the file). Register and command tables:
// README.md beside this file.
//
// Options (`--set key=value`, declared below): disk (image path; default: a temporary file
// removed at dispose), size (created/extended to it when smaller, e.g. 64M), lba (512 or 4096),
// dstrd (doorbell stride 4 << dstrd bytes, 0-4), queues (I/O queue pairs, 1-16), holdpoll,
// syncio. A served device's `behaviour.controller` is the controller (its namespace, counters).
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { definePciDevice, type PciDeviceBehaviour } from "../../src/index.ts";
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

/** What a served nvme offers besides its registers (`device.behaviour`). */
export interface NvmeBehaviour extends PciDeviceBehaviour {
  /** The controller: its queues, namespace (`controller.ns`) and counters. */
  readonly controller: NvmeController;
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
    disk: { kind: "path", description: "raw image file (created when missing); default: a temporary file" },
    size: {
      kind: "size",
      multipleOf: 4096,
      default: "64M",
      description: "create/extend the image to this size (an existing larger file keeps its size)",
    },
    lba: { kind: "enum", values: ["512", "4096"], default: "512", description: "logical block size" },
    dstrd: { kind: "integer", min: 0, max: 4, default: 0, description: "doorbell stride: 4 << dstrd bytes" },
    queues: {
      kind: "integer",
      min: 1,
      max: MAX_IO_QUEUES,
      default: 8,
      description: "I/O queue pairs offered",
    },
    holdpoll: {
      kind: "boolean",
      default: true,
      description:
        "on: after a burst, poll the shadow tail one timer tick before asking for an MMIO doorbell",
    },
    syncio: {
      kind: "enum",
      values: ["on", "reads", "off"],
      default: "on",
      description:
        "on: Reads/Writes up to 128 KiB run synchronously on the event loop; off: all on the libuv pool",
    },
  },
  create(ctx): NvmeBehaviour {
    const o = ctx.options;
    const lba = o.lba === "4096" ? 4096 : 512;
    const temp = !o.disk;
    const disk = o.disk || path.join(tmpdir(), `vfu-nvme-${process.pid}-${++tempDisks}.img`);
    const ns = new Namespace({ path: disk, size: o.size, lbaSize: lba, clock: ctx.clock });
    ns.syncIo = o.syncio;
    const c = new NvmeController(ctx, ns, {
      dstrd: o.dstrd,
      maxQueueEntries: MAX_QUEUE_ENTRIES,
      maxIoQueues: o.queues,
      vectors: NVME_VECTORS,
      holdPoll: o.holdpoll,
    });
    ctx.log.info(
      `nvme: ${disk}: ${ns.blocks} blocks of ${lba} bytes, ${o.queues} I/O queues, dstrd ${o.dstrd}`,
    );
    return {
      controller: c,
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
