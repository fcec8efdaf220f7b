// Turning the visible part of the framebuffer into RGBA pixels and a PNG (pngjs). The scan-out
// window is described by the DISPI registers: `virtWidth` pixels per line, the top-left corner at
// (`xOffset`, `yOffset`), `xres` x `yres` pixels shown, `bpp` bits per pixel. Pixel formats:
//   32 bpp  XRGB8888: bytes B, G, R, X (little-endian) or X, R, G, B (big-endian framebuffer)
//   24 bpp  bytes B, G, R
//   16 bpp  RGB565, 15 bpp XRGB1555: 16-bit words, little-endian (big-endian: swapped)
// 8 bpp indexes the VGA palette, which this model does not have: refused.
import pngjs from "pngjs";

export interface ScanOut {
  xres: number;
  yres: number;
  bpp: number;
  virtWidth: number;
  xOffset: number;
  yOffset: number;
  bigEndian: boolean;
}

export interface Picture {
  width: number;
  height: number;
  /** width * height * 4 bytes, R G B A per pixel (A = 255). */
  rgba: Uint8Array;
}

export function bytesPerPixel(bpp: number): number {
  return bpp === 15 ? 2 : bpp / 8;
}

/** Byte offset of the first visible pixel and the line stride. */
export function scanGeometry(s: ScanOut): { start: number; stride: number } {
  const bypp = bytesPerPixel(s.bpp);
  const stride = s.virtWidth * bypp;
  return { start: s.yOffset * stride + s.xOffset * bypp, stride };
}

/** The visible pixels. Throws when the format has no direct colour or the window leaves VRAM. */
export function capture(vram: Uint8Array, s: ScanOut): Picture {
  if (![15, 16, 24, 32].includes(s.bpp))
    throw new Error(`cannot capture ${s.bpp} bpp (only 15, 16, 24 and 32 bpp have direct colour)`);
  if (s.xres === 0 || s.yres === 0) throw new Error(`cannot capture an empty ${s.xres}x${s.yres} mode`);
  const bypp = bytesPerPixel(s.bpp);
  const { start, stride } = scanGeometry(s);
  const end = start + (s.yres - 1) * stride + s.xres * bypp;
  if (end > vram.length)
    throw new Error(
      `the ${s.xres}x${s.yres}x${s.bpp} window at (${s.xOffset}, ${s.yOffset}), ${s.virtWidth} pixels a line, ` +
        `ends at byte ${end}, beyond the ${vram.length}-byte framebuffer`,
    );
  const rgba = new Uint8Array(s.xres * s.yres * 4);
  let o = 0;
  for (let y = 0; y < s.yres; y++) {
    let p = start + y * stride;
    for (let x = 0; x < s.xres; x++, p += bypp, o += 4) {
      let r: number;
      let g: number;
      let b: number;
      if (s.bpp === 32) {
        if (s.bigEndian) [r, g, b] = [vram[p + 1]!, vram[p + 2]!, vram[p + 3]!];
        else [b, g, r] = [vram[p]!, vram[p + 1]!, vram[p + 2]!];
      } else if (s.bpp === 24) {
        [b, g, r] = [vram[p]!, vram[p + 1]!, vram[p + 2]!];
      } else {
        const w = s.bigEndian ? (vram[p]! << 8) | vram[p + 1]! : vram[p]! | (vram[p + 1]! << 8);
        if (s.bpp === 16) {
          r = (w >> 11) & 0x1f;
          g = (w >> 5) & 0x3f;
          b = w & 0x1f;
          [r, g, b] = [(r << 3) | (r >> 2), (g << 2) | (g >> 4), (b << 3) | (b >> 2)];
        } else {
          r = (w >> 10) & 0x1f;
          g = (w >> 5) & 0x1f;
          b = w & 0x1f;
          [r, g, b] = [(r << 3) | (r >> 2), (g << 3) | (g >> 2), (b << 3) | (b >> 2)];
        }
      }
      rgba[o] = r;
      rgba[o + 1] = g;
      rgba[o + 2] = b;
      rgba[o + 3] = 255;
    }
  }
  return { width: s.xres, height: s.yres, rgba };
}

export function encodePng(p: Picture): Buffer {
  const png = new pngjs.PNG({ width: p.width, height: p.height });
  png.data = Buffer.from(p.rgba.buffer, p.rgba.byteOffset, p.rgba.byteLength);
  return pngjs.PNG.sync.write(png);
}

export function decodePng(bytes: Buffer): Picture {
  const png = pngjs.PNG.sync.read(bytes);
  return { width: png.width, height: png.height, rgba: new Uint8Array(png.data) };
}
