// bochs-display's options: what `--set` takes. vram and mmap shape the device (BAR0's size, and
// whether it is offered for mmap), so the definition is specialized by them (index.ts); the others
// only the model reads.

/** WIDTHxHEIGHT with each side 64-4095 (an EDID's preferred mode), or null. */
export function parseMode(text: string): { width: number; height: number } | null {
  const m = /^(\d+)x(\d+)$/i.exec(text.trim());
  const width = Number(m?.[1]);
  const height = Number(m?.[2]);
  if (!m || width < 64 || height < 64 || width > 4095 || height > 4095) return null;
  return { width, height };
}

export const BOCHS_OPTIONS = {
  vram: {
    kind: "size",
    min: "4M",
    max: "256M",
    powerOfTwo: true,
    default: "16M",
    description: "framebuffer (BAR0) size (Linux's bochs wants at least 4M)",
  },
  mmap: {
    kind: "boolean",
    default: true,
    description: "on: offer BAR0 to the client to mmap (fast framebuffer; QEMU then sends no posted writes)",
  },
  mode: {
    kind: "string",
    default: "1024x768",
    rule: { accepts: "WIDTHxHEIGHT, each side 64-4095", test: (text: string) => parseMode(text) !== null },
    description: "preferred mode in the EDID",
  },
  edid: {
    kind: "boolean",
    default: true,
    description: "on: an EDID at BAR2 + 0; off: none (the driver falls back to 1024x768)",
  },
  control: {
    kind: "path",
    description: "FIFO to read commands from (created if absent): png <file>, status",
  },
  "png-on-exit": { kind: "path", description: "save the screen as PNG to this file when the server stops" },
} as const;

export type BochsOptionDecls = typeof BOCHS_OPTIONS;
