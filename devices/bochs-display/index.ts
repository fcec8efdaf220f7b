// bochs-display: a display function in the shape of QEMU's "bochs-display" device (the stdvga
// programming model without the legacy VGA part), as Linux's `bochs` DRM driver (module `bochs`,
// PCI driver "bochs-drm") expects it. BAR0 is the framebuffer (prefetchable, memory-backed,
// write-combining); BAR2 is 4 KiB of MMIO: the EDID blob at 0x000, a few VGA ports at 0x400 (what
// the driver touches to blank and unblank), the 16-bit DISPI (VBE) registers at 0x500 and the
// QEMU extension registers (size, framebuffer byte order) at 0x600. The register table is in
// README.md beside this file; the facts were read off the driver's register use, and the code
// and text here are this project's.
//
// What the guest puts on screen is the server side's to look at: a served device's `behaviour`
// (`new PciDevice(bochsDisplay, …).behaviour`) gives the mode, the pixels and a PNG (`png()`,
// `savePng(path)`); `--set control=<fifo>` takes `png <file>` and `status` while the server runs;
// `--set png-on-exit=<file>` saves one when the server stops.
//
// The files: registers.ts (the register layout), options.ts (what `--set` takes), model.ts (the
// registers' behaviour and the screen), edid.ts, framebuffer.ts (pixels and PNG); this file is the
// definition, specialized by the options that shape it (vram, mmap).
import { definePciDevice, type PciDeviceDefinition } from "../../src/index.ts";
import { type BochsDisplayBehaviour, type BochsShape, createBochs } from "./model.ts";
import { BOCHS_OPTIONS, type BochsOptionDecls } from "./options.ts";
import { BOCHS_IDS, FB_BAR, MMIO_BAR, MMIO_SIZE } from "./registers.ts";

export type { BochsDisplayBehaviour, BochsShape, DisplayMode } from "./model.ts";
export { BOCHS_OPTIONS, parseMode } from "./options.ts";
export * from "./registers.ts";

export type BochsDisplayDefinition = PciDeviceDefinition<BochsDisplayBehaviour, BochsOptionDecls>;

/** The definition for a framebuffer size and mmap choice (`specialize` picks it from the options). */
export function bochsDisplayDefinition(o: BochsShape): BochsDisplayDefinition {
  return definePciDevice({
    name: "bochs-display",
    summary: "QEMU's bochs-display (1234:1111): DISPI framebuffer + EDID, driven by Linux's bochs DRM driver",
    ids: BOCHS_IDS,
    bars: [
      {
        index: FB_BAR,
        kind: "memory",
        size: o.vram,
        prefetchable: true,
        memory: true,
        mmap: o.mmap,
        cache: "WC",
        name: "framebuffer",
      },
      // Any width at any offset: the handlers split accesses by register.
      { index: MMIO_BAR, kind: "memory", size: MMIO_SIZE, cache: "UC", name: "mmio" },
    ],
    options: BOCHS_OPTIONS,
    create: (ctx) => createBochs(ctx, o),
  });
}

const variants = new Map<string, BochsDisplayDefinition>();

function variant(o: BochsShape): BochsDisplayDefinition {
  const key = `${o.vram}/${o.mmap}`;
  let def = variants.get(key);
  if (!def) {
    def = bochsDisplayDefinition(o);
    variants.set(key, def);
  }
  return def;
}

/** The registered model: 16 MiB, BAR0 mmappable; `--set vram=… --set mmap=off` choose another. */
export const bochsDisplay: BochsDisplayDefinition = {
  ...variant({ vram: 16 * 2 ** 20, mmap: true }),
  specialize: (options) => variant({ vram: options.vram, mmap: options.mmap }),
};
