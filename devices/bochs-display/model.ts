// The bochs-display model: the DISPI registers and the scan-out they describe, the VGA ports the
// driver uses to blank and unblank, the EDID, and the server side's view of the screen (the mode,
// the pixels, a PNG; the control channel's commands).
//
// BAR2 handlers take any offset and length inside the region: a write is split by register, each
// register gets its written bytes merged over its current value (so a byte write to half of a
// 16-bit DISPI register, or one write spanning several, does what byte lanes would do).
import { renameSync, writeFileSync } from "node:fs";
import {
  type ControlFifo,
  openControlChannel,
  type PciDeviceBehaviour,
  type PciDeviceContext,
} from "../../src/index.ts";
import { generateEdid } from "./edid.ts";
import { capture, encodePng, type Picture, type ScanOut, scanGeometry } from "./framebuffer.ts";
import { type BochsOptionDecls, parseMode } from "./options.ts";
import {
  ATT_PAS,
  BIG_ENDIAN,
  BPPS,
  DISPI_COUNT,
  DISPI_ID0,
  DISPI_ID5,
  Dispi,
  ENABLE_MASK,
  Enable,
  FB_BAR,
  LITTLE_ENDIAN,
  MAX_BPP,
  MAX_XRES,
  MAX_YRES,
  MMIO_BAR,
  Mmio,
  QEXT_SIZE,
  Qext,
  Vga,
} from "./registers.ts";

export interface DisplayMode extends ScanOut {
  /** Byte offset of the first visible pixel in BAR0 and bytes per line. */
  start: number;
  stride: number;
}

/** The shape the definition was built for: BAR0's size and whether it is offered for mmap. */
export interface BochsShape {
  /** Framebuffer bytes: a power of two, 4 MiB to 256 MiB. */
  vram: number;
  /** Offer BAR0 to the client to mmap. */
  mmap: boolean;
}

export interface DisplayMode extends ScanOut {
  /** Byte offset of the first visible pixel in BAR0 and bytes per line. */
  start: number;
  stride: number;
}

/** What a served bochs-display offers besides its registers (`device.behaviour`). */
export interface BochsDisplayBehaviour extends PciDeviceBehaviour {
  /** The framebuffer (BAR0's memory, shared with the client when mmapped). */
  readonly vram: Uint8Array;
  /** The EDID blob at BAR2 + 0 (256 bytes: the 128-byte base block, zero-padded), or null. */
  readonly edid: Uint8Array | null;
  /** The DISPI registers as a driver would read them (without GETCAPS): index -> value. */
  readonly dispi: readonly number[];
  /** The scan-out while ENABLE.ENABLED is set, else null. */
  readonly mode: DisplayMode | null;
  /** The last mode shown (the current one, or the one before a disable or reset). */
  readonly lastMode: DisplayMode | null;
  /** Framebuffer byte order from the extension register. */
  readonly bigEndian: boolean;
  /** The VGA attribute controller's palette address source is 0: a real screen would be dark. */
  readonly blanked: boolean;
  /** The visible pixels of the current mode (or the last one shown). Throws if there is none. */
  pixels(): Picture;
  /** The same as a PNG file's bytes. */
  png(): Buffer;
  /** Write `png()` to `path` (atomically: a temporary file renamed into place). */
  savePng(path: string): { width: number; height: number; bytes: number };
  /** Run one control-channel line ("png <file>", "status"); returns what it did. */
  command(line: string): string;
  /** One line: mode, offsets, byte order, blanking. */
  status(): string;
}

function hex(v: number, digits: number): string {
  return `0x${v.toString(16).padStart(digits, "0")}`;
}

/** The model of one bochs-display built for `o` (BAR0's size and mmap choice). */
export function createBochs(ctx: PciDeviceContext<BochsOptionDecls>, o: BochsShape): BochsDisplayBehaviour {
  const log = ctx.log;
  const vram = ctx.bar(FB_BAR).memory!;
  const vram64k = o.vram / 65536;
  const preferred = parseMode(ctx.options.mode);
  if (!preferred) throw new Error(`bochs-display: mode ${ctx.options.mode} is not WIDTHxHEIGHT`);
  const edid = ctx.options.edid
    ? (() => {
        const blob = new Uint8Array(256);
        blob.set(generateEdid(preferred));
        return blob;
      })()
    : null;

  const regs = new Array<number>(DISPI_COUNT).fill(0);
  const s = {
    bigEndian: false,
    attIndexPhase: true,
    attIndex: 0,
    misc: 0,
    lastMode: null as DisplayMode | null,
  };
  let control: ControlFifo | null = null;

  const bytesPerPixel = () => (regs[Dispi.BPP] === 15 ? 2 : regs[Dispi.BPP]! / 8);
  const enabled = () => (regs[Dispi.ENABLE]! & Enable.ENABLED) !== 0;

  const powerOn = () => {
    regs.fill(0);
    regs[Dispi.ID] = DISPI_ID5;
    regs[Dispi.BPP] = 8;
    regs[Dispi.VIDEO_MEMORY_64K] = vram64k;
    s.bigEndian = false;
    s.attIndexPhase = true;
    s.attIndex = 0;
    s.misc = 0;
  };

  const linesThatFit = (): number => {
    const stride = regs[Dispi.VIRT_WIDTH]! * bytesPerPixel();
    return stride > 0 ? Math.min(0xffff, Math.floor(o.vram / stride)) : 0;
  };

  // Keep the scan-out window inside VRAM: the virtual width is at least the visible width, the
  // virtual height is what fits, and the offsets keep the visible window in the virtual screen.
  const fixup = () => {
    if (regs[Dispi.VIRT_WIDTH]! < regs[Dispi.XRES]!) regs[Dispi.VIRT_WIDTH] = regs[Dispi.XRES]!;
    const maxLines = linesThatFit();
    if (regs[Dispi.VIRT_HEIGHT]! < regs[Dispi.YRES]!) regs[Dispi.VIRT_HEIGHT] = regs[Dispi.YRES]!;
    if (regs[Dispi.VIRT_HEIGHT]! > maxLines) regs[Dispi.VIRT_HEIGHT] = maxLines;
    const maxX = Math.max(0, regs[Dispi.VIRT_WIDTH]! - regs[Dispi.XRES]!);
    const maxY = Math.max(0, regs[Dispi.VIRT_HEIGHT]! - regs[Dispi.YRES]!);
    if (regs[Dispi.X_OFFSET]! > maxX) regs[Dispi.X_OFFSET] = maxX;
    if (regs[Dispi.Y_OFFSET]! > maxY) regs[Dispi.Y_OFFSET] = maxY;
  };

  const currentMode = (): DisplayMode | null => {
    if (!enabled()) return null;
    const scan: ScanOut = {
      xres: regs[Dispi.XRES]!,
      yres: regs[Dispi.YRES]!,
      bpp: regs[Dispi.BPP]!,
      virtWidth: regs[Dispi.VIRT_WIDTH]!,
      xOffset: regs[Dispi.X_OFFSET]!,
      yOffset: regs[Dispi.Y_OFFSET]!,
      bigEndian: s.bigEndian,
    };
    return { ...scan, ...scanGeometry(scan) };
  };
  const remember = () => {
    const m = currentMode();
    if (m) s.lastMode = m;
  };

  const modeText = (m: DisplayMode) =>
    `${m.xres}x${m.yres}x${m.bpp} virtual width ${m.virtWidth} offset (${m.xOffset}, ${m.yOffset}) ` +
    `${m.bigEndian ? "big" : "little"}-endian`;

  const dispiRead = (index: number): number => {
    const getcaps = (regs[Dispi.ENABLE]! & Enable.GETCAPS) !== 0;
    if (getcaps) {
      if (index === Dispi.XRES) return MAX_XRES;
      if (index === Dispi.YRES) return MAX_YRES;
      if (index === Dispi.BPP) return MAX_BPP;
    }
    return regs[index] ?? 0;
  };

  const dispiWrite = (index: number, value: number): void => {
    switch (index) {
      case Dispi.ID:
        if ((value & 0xfff0) === DISPI_ID0 && value <= DISPI_ID5) regs[Dispi.ID] = value;
        return;
      case Dispi.XRES:
        regs[index] = Math.min(value, MAX_XRES);
        break;
      case Dispi.YRES:
        regs[index] = Math.min(value, MAX_YRES);
        break;
      case Dispi.BPP:
        // 0 means 8, as on the original interface; other values are ignored.
        if (value === 0) regs[index] = 8;
        else if (BPPS.includes(value)) regs[index] = value;
        else log.debug(`DISPI BPP ${value} ignored`);
        break;
      case Dispi.ENABLE: {
        const was = enabled();
        regs[index] = value & ENABLE_MASK;
        if (enabled() && !was) {
          // Enabling a mode starts without panning: the virtual screen is as wide as the visible
          // one and as tall as VRAM allows (the driver sets its pitch and offsets afterwards).
          regs[Dispi.VIRT_WIDTH] = regs[Dispi.XRES]!;
          regs[Dispi.VIRT_HEIGHT] = linesThatFit();
          regs[Dispi.X_OFFSET] = 0;
          regs[Dispi.Y_OFFSET] = 0;
          fixup();
          if (!(value & Enable.NOCLEARMEM)) {
            const m = currentMode()!;
            vram.fill(0, 0, Math.min(vram.length, m.stride * m.yres));
          }
          log.info(`mode set: ${modeText(currentMode()!)}`);
        } else if (!enabled() && was) {
          log.info("display disabled");
        }
        remember();
        return;
      }
      case Dispi.BANK:
        // A 64 KiB window for the legacy VGA aperture, which this device has not: kept only.
        if (value < vram64k) regs[index] = value;
        return;
      case Dispi.VIRT_WIDTH:
        regs[index] = value;
        // While a mode is shown, a new pitch makes every line that fits part of the virtual screen.
        if (enabled()) {
          fixup();
          regs[Dispi.VIRT_HEIGHT] = linesThatFit();
        }
        break;
      case Dispi.VIRT_HEIGHT:
      case Dispi.X_OFFSET:
      case Dispi.Y_OFFSET:
        regs[index] = value;
        break;
      default:
        return; // VIDEO_MEMORY_64K is read-only; past 0xa nothing is decoded
    }
    fixup();
    remember();
  };

  const vgaRead = (offset: number): number => {
    switch (offset) {
      case Vga.IS1_RC:
        s.attIndexPhase = true;
        return 0;
      case Vga.MIS_R:
        return s.misc;
      case Vga.ATT_W:
        return s.attIndex;
      default:
        return 0;
    }
  };

  const vgaWrite = (offset: number, value: number): void => {
    if (offset === Vga.MIS_W) s.misc = value;
    else if (offset === Vga.ATT_W) {
      if (s.attIndexPhase) s.attIndex = value & 0x3f;
      s.attIndexPhase = !s.attIndexPhase;
    }
  };

  const qextValue = (offset: number): number => {
    if (offset === Qext.SIZE) return QEXT_SIZE;
    if (offset === Qext.BYTEORDER) return s.bigEndian ? BIG_ENDIAN : LITTLE_ENDIAN;
    return 0;
  };

  /** The register holding BAR2 byte `off`: its first byte and width, or null (not decoded). */
  const registerAt = (
    off: number,
  ): { base: number; width: number; kind: "dispi" | "qext" | "vga" } | null => {
    if (off >= Mmio.DISPI && off < Mmio.DISPI + DISPI_COUNT * 2)
      return { base: off & ~1, width: 2, kind: "dispi" };
    if (off >= Mmio.QEXT && off < Mmio.QEXT + QEXT_SIZE) return { base: off & ~3, width: 4, kind: "qext" };
    if (off >= Mmio.VGA && off < Mmio.VGA + 0x20) return { base: off, width: 1, kind: "vga" };
    return null;
  };

  const readByte = (off: number): number => {
    if (off < Mmio.VGA) return edid && off < edid.length ? edid[off]! : 0;
    const r = registerAt(off);
    if (!r) return 0;
    const lane = off - r.base;
    if (r.kind === "vga") return vgaRead(off);
    const v = r.kind === "dispi" ? dispiRead((r.base - Mmio.DISPI) >> 1) : qextValue(r.base);
    return (v >>> (8 * lane)) & 0xff;
  };

  const writeRegister = (base: number, kind: "dispi" | "qext" | "vga", value: number) => {
    if (kind === "dispi") dispiWrite((base - Mmio.DISPI) >> 1, value);
    else if (kind === "vga") vgaWrite(base, value);
    else if (base === Qext.BYTEORDER) {
      if (value === LITTLE_ENDIAN || value === BIG_ENDIAN) {
        s.bigEndian = value === BIG_ENDIAN;
        remember();
      } else log.debug(`byte order ${hex(value, 8)} ignored`);
    }
  };

  const mmioWrite = (offset: number, data: Uint8Array): void => {
    let i = 0;
    while (i < data.length) {
      const off = offset + i;
      const r = registerAt(off);
      if (!r) {
        i++;
        continue;
      }
      // Merge the bytes written into this register over its current value.
      let value =
        r.kind === "dispi"
          ? (regs[(r.base - Mmio.DISPI) >> 1] ?? 0)
          : r.kind === "qext"
            ? qextValue(r.base)
            : 0;
      let j = i;
      while (j < data.length && offset + j < r.base + r.width) {
        const lane = offset + j - r.base;
        value = (value & ~(0xff << (8 * lane))) | (data[j]! << (8 * lane));
        j++;
      }
      writeRegister(r.base, r.kind, value >>> 0);
      i = j;
    }
  };

  const pixels = (): Picture => {
    const m = currentMode() ?? s.lastMode;
    if (!m) throw new Error("nothing to capture: no mode has been set (DISPI ENABLE never set)");
    return capture(vram, m);
  };

  const savePng = (path: string) => {
    const pic = pixels();
    const bytes = encodePng(pic);
    const tmp = `${path}.tmp-${process.pid}`;
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
    return { width: pic.width, height: pic.height, bytes: bytes.length };
  };

  const status = (): string => {
    const m = currentMode();
    const shown = m ? modeText(m) : s.lastMode ? `disabled (last ${modeText(s.lastMode)})` : "disabled";
    return `bochs-display: ${shown}, ${o.vram / 2 ** 20} MiB, ${s.attIndex & ATT_PAS ? "unblanked" : "blanked"}`;
  };

  const command = (text: string): string => {
    const line = text.replace(/#.*/, "").trim();
    if (line === "") return "";
    const sp = line.search(/\s/);
    const verb = (sp < 0 ? line : line.slice(0, sp)).toLowerCase();
    const rest = sp < 0 ? "" : line.slice(sp + 1).trim();
    switch (verb) {
      case "png": {
        if (!rest) throw new Error(`"png" takes a file name, e.g. "png /tmp/screen.png"`);
        const r = savePng(rest);
        const did = `saved ${r.width}x${r.height} PNG (${r.bytes} bytes) to ${rest}`;
        log.info(did);
        return did;
      }
      case "status": {
        if (rest) throw new Error(`"status" takes no arguments`);
        const text = status();
        log.info(text);
        return text;
      }
      default:
        throw new Error(`unknown command "${verb}" (png <file>, status)`);
    }
  };

  powerOn();

  const behaviour: BochsDisplayBehaviour = {
    vram,
    edid,
    get dispi() {
      return [...regs];
    },
    get mode() {
      return currentMode();
    },
    get lastMode() {
      return currentMode() ?? s.lastMode;
    },
    get bigEndian() {
      return s.bigEndian;
    },
    get blanked() {
      return (s.attIndex & ATT_PAS) === 0;
    },
    pixels,
    png: () => encodePng(pixels()),
    savePng,
    command,
    status,
    bars: {
      [MMIO_BAR]: {
        read(offset, size) {
          const out = new Uint8Array(size);
          for (let i = 0; i < size; i++) out[i] = readByte(offset + i);
          return out;
        },
        write: mmioWrite,
      },
      // BAR0 has no handlers: trapped accesses read and write its memory directly.
    },
    reset() {
      // The registers return to power-on; VRAM keeps its contents, as memory does.
      if (enabled()) log.info("reset: display disabled");
      powerOn();
    },
    dispose() {
      control?.close();
      const onExit = ctx.options["png-on-exit"];
      if (onExit) {
        try {
          const r = savePng(onExit);
          log.info(`png-on-exit: saved ${r.width}x${r.height} PNG to ${onExit}`);
        } catch (err) {
          log.warn(`png-on-exit ${onExit}: ${(err as Error).message}`);
        }
      }
    },
  };

  const controlPath = ctx.options.control;
  if (controlPath) {
    control = openControlChannel(controlPath, (line) => behaviour.command(line), log);
    log.info(`control channel ${controlPath}: "png <file>", "status"`);
  }
  return behaviour;
}
