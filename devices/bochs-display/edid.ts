// A 128-byte EDID 1.4 base block for the bochs-display: the monitor the guest's driver reads from
// the start of BAR2 (Linux's `bochs` checks the 8-byte header, then reads block 0 and trusts its
// checksum). Written from the VESA E-EDID layout; no extension blocks.
//
// What it says: manufacturer "VFU", a digital 8-bit-per-colour RGB display with sRGB primaries, a
// detailed timing descriptor for the preferred mode (blanking in the style of CVT reduced
// blanking, 60 Hz), a range-limits descriptor wide enough for every mode the driver may try, and a
// monitor name. No established or standard timings, so the driver's mode list is the preferred
// mode (plus what Linux adds on its own for a connector that has an EDID).

export interface EdidOptions {
  /** Preferred mode, pixels. */
  width: number;
  height: number;
  /** Refresh rate of the preferred mode, Hz (default 60). */
  refresh?: number;
  /** Monitor name, at most 13 ASCII characters (default "vfu bochs"). */
  name?: string;
  /** Serial number (default 0). */
  serial?: number;
}

export const EDID_LENGTH = 128;
export const EDID_HEADER = [0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00] as const;

/** Three letters A-Z packed as EDID's 5-bit manufacturer code, big-endian. */
export function manufacturerId(letters: string): number {
  if (!/^[A-Z]{3}$/.test(letters)) throw new Error(`EDID manufacturer "${letters}" is not three letters A-Z`);
  const c = (i: number) => letters.charCodeAt(i) - 64;
  return (c(0) << 10) | (c(1) << 5) | c(2);
}

/** The byte that makes the block sum to 0 mod 256. */
export function edidChecksum(block: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < EDID_LENGTH - 1; i++) sum += block[i]!;
  return (256 - (sum & 0xff)) & 0xff;
}

/** Whether a block has the header and a correct checksum. */
export function edidValid(block: Uint8Array): boolean {
  if (block.length < EDID_LENGTH) return false;
  if (EDID_HEADER.some((b, i) => block[i] !== b)) return false;
  let sum = 0;
  for (let i = 0; i < EDID_LENGTH; i++) sum += block[i]!;
  return (sum & 0xff) === 0;
}

/** The timing of the preferred mode: totals and sync placement, reduced-blanking style. */
export interface Timing {
  width: number;
  height: number;
  hfront: number;
  hsync: number;
  hblank: number;
  vfront: number;
  vsync: number;
  vblank: number;
  /** Pixel clock in 10 kHz units (EDID's unit). */
  clock10k: number;
}

export function timingFor(width: number, height: number, refresh = 60): Timing {
  const hblank = 160;
  const hfront = 48;
  const hsync = 32;
  const vfront = 3;
  const vsync = 6;
  // Enough lines of vertical blanking for about 460 us, at least 3 + 6 + 6.
  const lineUs = 1e6 / refresh / (height + 20);
  const vblank = Math.max(vfront + vsync + 6, Math.ceil(460 / lineUs));
  const clock10k = Math.round(((width + hblank) * (height + vblank) * refresh) / 10_000);
  return { width, height, hfront, hsync, hblank, vfront, vsync, vblank, clock10k };
}

function descriptorText(tag: number, text: string): Uint8Array {
  const d = new Uint8Array(18);
  d[3] = tag;
  const bytes = [...text.slice(0, 13)].map((ch) => ch.charCodeAt(0) & 0x7f);
  if (bytes.length < 13) bytes.push(0x0a);
  while (bytes.length < 13) bytes.push(0x20);
  d.set(bytes, 5);
  return d;
}

function detailedTiming(t: Timing, widthMm: number, heightMm: number): Uint8Array {
  const d = new Uint8Array(18);
  d[0] = t.clock10k & 0xff;
  d[1] = t.clock10k >> 8;
  d[2] = t.width & 0xff;
  d[3] = t.hblank & 0xff;
  d[4] = ((t.width >> 8) << 4) | (t.hblank >> 8);
  d[5] = t.height & 0xff;
  d[6] = t.vblank & 0xff;
  d[7] = ((t.height >> 8) << 4) | (t.vblank >> 8);
  d[8] = t.hfront & 0xff;
  d[9] = t.hsync & 0xff;
  d[10] = ((t.vfront & 0xf) << 4) | (t.vsync & 0xf);
  d[11] = ((t.hfront >> 8) << 6) | ((t.hsync >> 8) << 4) | ((t.vfront >> 4) << 2) | (t.vsync >> 4);
  d[12] = widthMm & 0xff;
  d[13] = heightMm & 0xff;
  d[14] = ((widthMm >> 8) << 4) | (heightMm >> 8);
  // d[15], d[16]: no border. Digital separate sync, both polarities positive.
  d[17] = 0x18 | 0x04 | 0x02;
  return d;
}

/** A 10-bit chromaticity coordinate. */
const chroma = (v: number) => Math.round(v * 1024);

export function generateEdid(o: EdidOptions): Uint8Array {
  const { width, height } = o;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 64 || height < 64)
    throw new Error(`EDID preferred mode ${width}x${height}: both sides must be integers of at least 64`);
  if (width > 4095 || height > 4095)
    throw new Error(`EDID preferred mode ${width}x${height}: a detailed timing holds at most 4095x4095`);
  const refresh = o.refresh ?? 60;
  const t = timingFor(width, height, refresh);
  if (t.clock10k > 0xffff)
    throw new Error(`EDID preferred mode ${width}x${height}@${refresh}: clock too high`);
  const e = new Uint8Array(EDID_LENGTH);
  e.set(EDID_HEADER, 0);
  const mfg = manufacturerId("VFU");
  e[8] = mfg >> 8;
  e[9] = mfg & 0xff;
  e[10] = 0x34; // product code 0x1234, little-endian
  e[11] = 0x12;
  const serial = (o.serial ?? 0) >>> 0;
  for (let i = 0; i < 4; i++) e[12 + i] = (serial >>> (8 * i)) & 0xff;
  e[16] = 1; //   week of manufacture
  e[17] = 2025 - 1990; // year
  e[18] = 1; //   EDID 1.4
  e[19] = 4;
  e[20] = 0x80 | 0x20; // digital input, 8 bits per primary, interface not specified
  // Screen size in cm, as if 96 dots per inch.
  const widthMm = Math.round((width * 25.4) / 96);
  const heightMm = Math.round((height * 25.4) / 96);
  e[21] = Math.min(255, Math.round(widthMm / 10));
  e[22] = Math.min(255, Math.round(heightMm / 10));
  e[23] = 120; // gamma 2.2: (2.2 * 100) - 100
  e[24] = 0x04 | 0x02; // sRGB default colour space; preferred timing is native
  // sRGB primaries and D65 white.
  const [rx, ry, gx, gy, bx, by, wx, wy] = [0.64, 0.33, 0.3, 0.6, 0.15, 0.06, 0.3127, 0.329].map(chroma) as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  e[25] = ((rx & 3) << 6) | ((ry & 3) << 4) | ((gx & 3) << 2) | (gy & 3);
  e[26] = ((bx & 3) << 6) | ((by & 3) << 4) | ((wx & 3) << 2) | (wy & 3);
  [rx, ry, gx, gy, bx, by, wx, wy].forEach((v, i) => {
    e[27 + i] = v >> 2;
  });
  // 35-37: no established timings. 38-53: eight unused standard timings.
  for (let i = 38; i < 54; i++) e[i] = 0x01;
  e.set(detailedTiming(t, widthMm, heightMm), 54);
  // Range limits: 50-125 Hz vertical, 30-160 kHz horizontal, 600 MHz; no timing formula.
  const range = new Uint8Array(18);
  range.set([0, 0, 0, 0xfd, 0, 50, 125, 30, 160, 60, 0x01, 0x0a, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20]);
  e.set(range, 72);
  e.set(descriptorText(0xfc, o.name ?? "vfu bochs"), 90);
  e.set(descriptorText(0xff, String(serial)), 108);
  e[126] = 0; // no extension blocks
  e[127] = edidChecksum(e);
  return e;
}
