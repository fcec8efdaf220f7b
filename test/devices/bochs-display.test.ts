import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import {
  EDID_LENGTH,
  edidChecksum,
  edidValid,
  generateEdid,
  manufacturerId,
} from "../../devices/bochs-display/edid.ts";
import { decodePng } from "../../devices/bochs-display/framebuffer.ts";
import {
  BIG_ENDIAN,
  BOCHS_IDS,
  type BochsDisplayBehaviour,
  bochsDisplay,
  DISPI_ID0,
  DISPI_ID5,
  Dispi,
  Enable,
  FB_BAR,
  LITTLE_ENDIAN,
  MAX_BPP,
  MAX_XRES,
  MAX_YRES,
  MMIO_BAR,
  Mmio,
  Qext,
  Vga,
} from "../../devices/bochs-display/index.ts";
import { findDeviceModel } from "../../devices/index.ts";
import {
  createMemoryPair,
  DeviceDma,
  type DeviceFactory,
  MemorySink,
  PciDevice,
  PciHeader,
  PciRegion,
  RegionFlag,
  resolveOptions,
  SinkLogger,
  serveConnection,
  VfioUserClient,
} from "../../src/index.ts";
import { startCliServer, waitFor } from "../helpers/cli-server.ts";

const _repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const MiB = 2 ** 20;

interface Harness {
  client: VfioUserClient;
  device: PciDevice<BochsDisplayBehaviour>;
  bochs: BochsDisplayBehaviour;
  logs: MemorySink;
  dispi(index: number): Promise<number>;
  setDispi(index: number, value: number): Promise<void>;
  mmio(offset: number, size: number): Promise<number>;
  setMmio(offset: number, size: number, value: number): Promise<void>;
  close(): Promise<void>;
}

function le(value: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = Math.floor(value / 256 ** i) & 0xff;
  return out;
}

function num(bytes: Uint8Array): number {
  let v = 0;
  for (let i = bytes.length - 1; i >= 0; i--) v = v * 256 + bytes[i]!;
  return v;
}

async function serve(options: Record<string, string> = {}): Promise<Harness> {
  const logs = new MemorySink();
  const log = new SinkLogger(logs, "debug");
  let device: PciDevice<BochsDisplayBehaviour> | undefined;
  const make: DeviceFactory = (dma) => {
    device = new PciDevice(bochsDisplay, { dma, log, options });
    return device;
  };
  const [a, b] = createMemoryPair();
  const session = serveConnection(b, make, { log });
  const client = await VfioUserClient.over(a);
  const h: Harness = {
    client,
    device: device!,
    bochs: device!.behaviour,
    logs,
    dispi: async (i) => num(await client.regionRead(MMIO_BAR, Mmio.DISPI + i * 2, 2)),
    setDispi: (i, v) => client.regionWrite(MMIO_BAR, Mmio.DISPI + i * 2, le(v, 2)),
    mmio: async (off, size) => num(await client.regionRead(MMIO_BAR, off, size)),
    setMmio: (off, size, v) => client.regionWrite(MMIO_BAR, off, le(v, size)),
    close: async () => {
      client.close();
      await session.ended;
      device!.dispose();
    },
  };
  return h;
}

/** What Linux's bochs driver does to show an XRGB8888 mode (blank off, registers, enable, pitch). */
async function driverModeSet(h: Harness, xres: number, yres: number, vramBytes = 16 * MiB): Promise<void> {
  await h.setMmio(Vga.MIS_W, 1, 0x01);
  await h.mmio(Vga.IS1_RC, 1);
  await h.setMmio(Vga.ATT_W, 1, 0x20);
  await h.setDispi(Dispi.ENABLE, 0);
  await h.setDispi(Dispi.BPP, 32);
  await h.setDispi(Dispi.XRES, xres);
  await h.setDispi(Dispi.YRES, yres);
  await h.setDispi(Dispi.BANK, 0);
  await h.setDispi(Dispi.VIRT_WIDTH, xres);
  await h.setDispi(Dispi.VIRT_HEIGHT, Math.floor(vramBytes / (xres * 4)));
  await h.setDispi(Dispi.X_OFFSET, 0);
  await h.setDispi(Dispi.Y_OFFSET, 0);
  await h.setDispi(Dispi.ENABLE, Enable.ENABLED | Enable.LFB_ENABLED);
  await h.setDispi(Dispi.VIRT_WIDTH, xres);
  await h.setDispi(Dispi.X_OFFSET, 0);
  await h.setDispi(Dispi.Y_OFFSET, 0);
  await h.client.regionWrite(MMIO_BAR, Qext.BYTEORDER, le(LITTLE_ENDIAN, 4));
}

t.test("identification: IDs, class, revision, BARs as the bochs driver expects them", async (t) => {
  const h = await serve();
  t.teardown(() => h.close());
  const cfg = async (off: number, size: number) =>
    num(await h.client.regionRead(PciRegion.CONFIG, off, size));
  t.equal(await cfg(PciHeader.VENDOR_ID, 2), 0x1234, "vendor 0x1234");
  t.equal(await cfg(PciHeader.DEVICE_ID, 2), 0x1111, "device 0x1111");
  t.equal(await cfg(PciHeader.REVISION_ID, 4), (0x038000 << 8) | 2, "class 0x038000 (display, other), rev 2");
  t.equal(await cfg(PciHeader.SUBSYSTEM_VENDOR_ID, 2), 0x1af4, "subsystem vendor 0x1af4");
  t.equal(await cfg(PciHeader.SUBSYSTEM_ID, 2), 0x1100, "subsystem 0x1100");
  t.equal(BOCHS_IDS.revision, 2);
  t.equal((await cfg(PciHeader.BAR0, 4)) & 0xf, 0x8, "BAR0: 32-bit prefetchable memory");
  t.equal((await cfg(PciHeader.BAR2, 4)) & 0xf, 0x0, "BAR2: 32-bit memory, not prefetchable");
  const fb = await h.client.getRegionInfo(FB_BAR);
  t.equal(fb.size, 16n * BigInt(MiB), "BAR0 16 MiB by default");
  t.ok(fb.flags & RegionFlag.MMAP, "BAR0 offered for mmap by default");
  t.not(fb.fd, null, "with an fd");
  const mmio = await h.client.getRegionInfo(MMIO_BAR);
  t.equal(mmio.size, 4096n, "BAR2 4 KiB");
  t.notOk(mmio.flags & RegionFlag.MMAP, "BAR2 is trapped");
  for (const i of [1, 3, 4, 5]) t.equal((await h.client.getRegionInfo(i)).size, 0n, `region ${i} absent`);
  t.equal(findDeviceModel("bochs-display")?.name, "bochs-display", "registered for vfu serve");
});

t.test("DISPI registers: power-on values", async (t) => {
  const h = await serve();
  t.teardown(() => h.close());
  const expect: Record<number, number> = {
    [Dispi.ID]: DISPI_ID5,
    [Dispi.XRES]: 0,
    [Dispi.YRES]: 0,
    [Dispi.BPP]: 8,
    [Dispi.ENABLE]: 0,
    [Dispi.BANK]: 0,
    [Dispi.VIRT_WIDTH]: 0,
    [Dispi.VIRT_HEIGHT]: 0,
    [Dispi.X_OFFSET]: 0,
    [Dispi.Y_OFFSET]: 0,
    [Dispi.VIDEO_MEMORY_64K]: 256,
  };
  for (const [i, v] of Object.entries(expect)) t.equal(await h.dispi(Number(i)), v, `index ${i}`);
  t.equal(await h.mmio(Mmio.DISPI + 0x16, 2), 0, "past the last index: 0");
  t.equal(h.bochs.mode, null, "no mode");
});

t.test("DISPI ID: accepts 0xB0C0-0xB0C5, ignores anything else", async (t) => {
  const h = await serve();
  t.teardown(() => h.close());
  await h.setDispi(Dispi.ID, DISPI_ID0 + 2);
  t.equal(await h.dispi(Dispi.ID), 0xb0c2);
  await h.setDispi(Dispi.ID, 0x1234);
  t.equal(await h.dispi(Dispi.ID), 0xb0c2, "a foreign value is ignored");
  await h.setDispi(Dispi.ID, 0xb0c9);
  t.equal(await h.dispi(Dispi.ID), 0xb0c2, "a newer revision than ID5 too");
  await h.setDispi(Dispi.ID, DISPI_ID5);
  t.equal(await h.dispi(Dispi.ID), DISPI_ID5);
});

t.test("DISPI XRES/YRES/BPP: stored, clamped, GETCAPS reads the maxima", async (t) => {
  const h = await serve();
  t.teardown(() => h.close());
  await h.setDispi(Dispi.XRES, 800);
  await h.setDispi(Dispi.YRES, 600);
  t.equal(await h.dispi(Dispi.XRES), 800);
  t.equal(await h.dispi(Dispi.YRES), 600);
  await h.setDispi(Dispi.XRES, 60000);
  t.equal(await h.dispi(Dispi.XRES), MAX_XRES, "XRES clamped to the maximum");
  await h.setDispi(Dispi.YRES, 60000);
  t.equal(await h.dispi(Dispi.YRES), MAX_YRES, "YRES clamped");
  for (const bpp of [15, 16, 24, 32, 8]) {
    await h.setDispi(Dispi.BPP, bpp);
    t.equal(await h.dispi(Dispi.BPP), bpp, `BPP ${bpp}`);
  }
  await h.setDispi(Dispi.BPP, 12);
  t.equal(await h.dispi(Dispi.BPP), 8, "an unknown depth is ignored");
  await h.setDispi(Dispi.BPP, 0);
  t.equal(await h.dispi(Dispi.BPP), 8, "0 means 8");
  await h.setDispi(Dispi.XRES, 640);
  await h.setDispi(Dispi.ENABLE, Enable.GETCAPS);
  t.equal(await h.dispi(Dispi.XRES), MAX_XRES, "GETCAPS: XRES reads the maximum");
  t.equal(await h.dispi(Dispi.YRES), MAX_YRES);
  t.equal(await h.dispi(Dispi.BPP), MAX_BPP);
  await h.setDispi(Dispi.ENABLE, 0);
  t.equal(await h.dispi(Dispi.XRES), 640, "without GETCAPS the value written");
});

t.test("DISPI VIDEO_MEMORY_64K: read-only, follows vram", async (t) => {
  const h = await serve({ vram: "4M" });
  t.teardown(() => h.close());
  t.equal(await h.dispi(Dispi.VIDEO_MEMORY_64K), 64, "4 MiB = 64 x 64 KiB");
  await h.setDispi(Dispi.VIDEO_MEMORY_64K, 1);
  t.equal(await h.dispi(Dispi.VIDEO_MEMORY_64K), 64, "writes ignored");
  t.equal((await h.client.getRegionInfo(FB_BAR)).size, 4n * BigInt(MiB), "BAR0 follows vram");
});

t.test("DISPI ENABLE, VIRT_WIDTH/HEIGHT, X/Y_OFFSET, BANK: enabling, panning, clamping", async (t) => {
  const h = await serve({ vram: "4M" });
  t.teardown(() => h.close());
  h.bochs.vram.fill(0xaa);
  await h.setDispi(Dispi.BPP, 32);
  await h.setDispi(Dispi.XRES, 640);
  await h.setDispi(Dispi.YRES, 480);
  await h.setDispi(Dispi.X_OFFSET, 5);
  await h.setDispi(Dispi.ENABLE, Enable.ENABLED | Enable.LFB_ENABLED | 0x04);
  t.equal(await h.dispi(Dispi.ENABLE), 0x41, "undefined ENABLE bits read 0");
  t.equal(await h.dispi(Dispi.VIRT_WIDTH), 640, "enabling: virtual width = XRES");
  t.equal(
    await h.dispi(Dispi.VIRT_HEIGHT),
    Math.floor((4 * MiB) / 2560),
    "virtual height: every line that fits",
  );
  t.equal(await h.dispi(Dispi.X_OFFSET), 0, "offsets back to 0");
  t.equal(h.bochs.vram[0], 0, "enabling without NOCLEARMEM clears the visible screen");
  t.equal(h.bochs.vram[640 * 480 * 4 - 1], 0);
  t.equal(h.bochs.vram[640 * 480 * 4], 0xaa, "and no more");
  t.same(
    h.bochs.mode && { ...h.bochs.mode },
    {
      xres: 640,
      yres: 480,
      bpp: 32,
      virtWidth: 640,
      xOffset: 0,
      yOffset: 0,
      bigEndian: false,
      start: 0,
      stride: 2560,
    },
    "the mode",
  );
  // Panning (what the driver's setbase does for a buffer at 1 MiB).
  await h.setDispi(Dispi.VIRT_WIDTH, 640);
  await h.setDispi(Dispi.Y_OFFSET, MiB / 2560);
  t.equal(await h.dispi(Dispi.Y_OFFSET), 409, "Y_OFFSET within the virtual screen");
  t.equal(h.bochs.mode?.start, 409 * 2560, "scan-out starts there");
  await h.setDispi(Dispi.Y_OFFSET, 5000);
  t.equal(await h.dispi(Dispi.Y_OFFSET), 1638 - 480, "clamped so the visible window stays in VRAM");
  await h.setDispi(Dispi.X_OFFSET, 10);
  t.equal(await h.dispi(Dispi.X_OFFSET), 0, "no room to pan sideways when virtual width = XRES");
  await h.setDispi(Dispi.VIRT_WIDTH, 1024);
  t.equal(await h.dispi(Dispi.VIRT_HEIGHT), 1024, "a wider pitch: the lines that fit");
  await h.setDispi(Dispi.X_OFFSET, 10);
  t.equal(await h.dispi(Dispi.X_OFFSET), 10, "now it pans");
  await h.setDispi(Dispi.VIRT_WIDTH, 100);
  t.equal(await h.dispi(Dispi.VIRT_WIDTH), 640, "virtual width never below XRES");
  await h.setDispi(Dispi.VIRT_HEIGHT, 10);
  t.equal(await h.dispi(Dispi.VIRT_HEIGHT), 480, "virtual height never below YRES");
  await h.setDispi(Dispi.BANK, 3);
  t.equal(await h.dispi(Dispi.BANK), 3, "BANK kept");
  await h.setDispi(Dispi.BANK, 64);
  t.equal(await h.dispi(Dispi.BANK), 3, "a bank past VRAM ignored");
  h.bochs.vram.fill(0x55, 0, 16);
  await h.setDispi(Dispi.ENABLE, 0);
  t.equal(h.bochs.mode, null, "disabled");
  t.equal(h.bochs.lastMode?.xres, 640, "the last mode is remembered");
  await h.setDispi(Dispi.ENABLE, Enable.ENABLED | Enable.NOCLEARMEM);
  t.equal(h.bochs.vram[0], 0x55, "NOCLEARMEM keeps VRAM");
});

t.test("byte lanes: byte, word and dword accesses; a dword spans two DISPI registers", async (t) => {
  const h = await serve();
  t.teardown(() => h.close());
  await h.setMmio(Mmio.DISPI + Dispi.XRES * 2, 1, 0x20);
  await h.setMmio(Mmio.DISPI + Dispi.XRES * 2 + 1, 1, 0x03);
  t.equal(await h.dispi(Dispi.XRES), 0x320, "two byte writes make 800");
  t.equal(await h.mmio(Mmio.DISPI + Dispi.XRES * 2 + 1, 1), 0x03, "byte read of the high lane");
  await h.setMmio(Mmio.DISPI + Dispi.XRES * 2, 4, (600 << 16) | 1024);
  t.equal(await h.dispi(Dispi.XRES), 1024, "a dword write sets XRES…");
  t.equal(await h.dispi(Dispi.YRES), 600, "…and YRES");
  t.equal(await h.mmio(Mmio.DISPI, 4), (1024 << 16) | DISPI_ID5, "dword read of ID and XRES");
  // One long write (as a write-combining buffer may deliver) over several registers.
  await h.client.regionWrite(
    MMIO_BAR,
    Mmio.DISPI + Dispi.XRES * 2,
    new Uint8Array([0x80, 0x02, 0xe0, 0x01, 16, 0]),
  );
  t.same([await h.dispi(Dispi.XRES), await h.dispi(Dispi.YRES), await h.dispi(Dispi.BPP)], [640, 480, 16]);
});

t.test("QEMU extension registers: size, byte order", async (t) => {
  const h = await serve();
  t.teardown(() => h.close());
  t.equal(await h.mmio(Qext.SIZE, 4), 8, "8 bytes of extension registers");
  t.equal(await h.mmio(Qext.BYTEORDER, 4), LITTLE_ENDIAN, "little-endian at power-on");
  await h.setMmio(Qext.BYTEORDER, 4, BIG_ENDIAN);
  t.equal(await h.mmio(Qext.BYTEORDER, 4), BIG_ENDIAN);
  t.equal(h.bochs.bigEndian, true);
  await h.setMmio(Qext.BYTEORDER, 4, 0x12345678);
  t.equal(await h.mmio(Qext.BYTEORDER, 4), BIG_ENDIAN, "other values ignored");
  await h.setMmio(Qext.SIZE, 4, 99);
  t.equal(await h.mmio(Qext.SIZE, 4), 8, "size is read-only");
  await h.setMmio(Qext.BYTEORDER, 4, LITTLE_ENDIAN);
  t.equal(h.bochs.bigEndian, false);
  t.equal(await h.mmio(0x800, 4), 0, "undecoded space reads 0");
  await h.setMmio(0x800, 4, 0xffffffff);
});

t.test("VGA ports: the attribute flip-flop the driver uses to blank and unblank", async (t) => {
  const h = await serve();
  t.teardown(() => h.close());
  t.equal(h.bochs.blanked, true, "blanked at power-on");
  await h.setMmio(Vga.MIS_W, 1, 0x01);
  t.equal(await h.mmio(Vga.MIS_R, 1), 0x01, "misc output reads back at 0x3cc");
  await h.mmio(Vga.IS1_RC, 1);
  await h.setMmio(Vga.ATT_W, 1, 0x20);
  t.equal(h.bochs.blanked, false, "index write with bit 5: unblanked");
  await h.mmio(Vga.IS1_RC, 1);
  await h.setMmio(Vga.ATT_W, 1, 0x00);
  t.equal(h.bochs.blanked, true, "index write 0: blanked");
  await h.setMmio(Vga.ATT_W, 1, 0x20);
  t.equal(h.bochs.blanked, true, "the second write is the data phase: no change");
});

t.test("EDID: header, manufacturer, preferred mode, checksum; RO; edid=off", async (t) => {
  const h = await serve({ mode: "800x600" });
  t.teardown(() => h.close());
  const blob = await h.client.regionRead(MMIO_BAR, 0, 256);
  t.same([...blob.subarray(0, 8)], [0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0], "header");
  t.ok(edidValid(blob), "valid");
  let sum = 0;
  for (let i = 0; i < EDID_LENGTH; i++) sum += blob[i]!;
  t.equal(sum % 256, 0, "the 128 bytes sum to 0 mod 256");
  t.equal(blob[127], edidChecksum(blob));
  t.equal((blob[8]! << 8) | blob[9]!, manufacturerId("VFU"), "manufacturer VFU");
  t.same([blob[18], blob[19]], [1, 4], "EDID 1.4");
  t.equal(blob[126], 0, "no extension blocks");
  t.same([...blob.subarray(128)], Array(128).fill(0), "zero after the base block");
  const dtd = blob.subarray(54, 72);
  t.equal(dtd[2]! | ((dtd[4]! >> 4) << 8), 800, "preferred width");
  t.equal(dtd[5]! | ((dtd[7]! >> 4) << 8), 600, "preferred height");
  t.ok(dtd[0]! | (dtd[1]! << 8), "non-zero pixel clock: a detailed timing, not a descriptor");
  t.same([...blob.subarray(90, 95)], [0, 0, 0, 0xfc, 0], "monitor name descriptor");
  t.equal(Buffer.from(blob.subarray(95, 104)).toString("latin1"), "vfu bochs");
  t.equal(await h.mmio(0x3ff, 1), 0, "the EDID window ends at 0x3ff");
  await h.setMmio(0, 4, 0);
  t.equal(await h.mmio(0, 4), 0xffffff00, "writes to the EDID are ignored");
  t.throws(() => generateEdid({ width: 32, height: 32 }), /at least 64/);

  const off = await serve({ edid: "off" });
  t.teardown(() => off.close());
  t.equal(await off.mmio(0, 4), 0, "edid=off: the driver's header check fails");
});

t.test(
  "driver mode set, framebuffer writes -> PNG pixels (trapped, posted, write-multi, mmap)",
  async (t) => {
    const h = await serve();
    t.teardown(() => h.close());
    t.throws(() => h.bochs.png(), /no mode has been set/, "no mode yet: nothing to capture");
    await driverModeSet(h, 64, 48);
    t.equal(h.bochs.blanked, false);
    t.equal(h.bochs.mode?.xres, 64);
    const px = (x: number, y: number) => (y * 64 + x) * 4;
    // Trapped writes: one pixel, a 4-pixel line segment (one 16-byte write), posted, write-multi.
    await h.client.regionWrite(FB_BAR, px(0, 0), le(0x00ff0000, 4)); // red (XRGB)
    await h.client.regionWrite(
      FB_BAR,
      px(1, 0),
      new Uint8Array([0, 0xff, 0, 0, 0, 0, 0xff, 0, 1, 2, 3, 0, 4, 5, 6, 0]),
    );
    await h.client.regionWrite(FB_BAR, px(5, 0), le(0x00ffffff, 4), { posted: true });
    await h.client.writeMulti([
      { region: FB_BAR, offset: BigInt(px(6, 0)), count: 4, data: le(0x00112233, 4) },
      { region: FB_BAR, offset: BigInt(px(7, 0)), count: 2, data: le(0x3344, 2) },
    ]);
    // Through the client's mmap of BAR0: the same memory.
    const fb = await h.client.mmapRegion(FB_BAR);
    new DataView(fb.buffer).setUint32(px(63, 47), 0x000000ff, true); // blue, bottom right
    const png = decodePng(h.bochs.png());
    t.same([png.width, png.height], [64, 48], "PNG of the mode's size");
    const rgb = (x: number, y: number) => [...png.rgba.subarray((y * 64 + x) * 4, (y * 64 + x) * 4 + 4)];
    t.same(rgb(0, 0), [255, 0, 0, 255], "red");
    t.same(rgb(1, 0), [0, 255, 0, 255], "bytes 0, ff, 0, 0: green");
    t.same(rgb(2, 0), [255, 0, 0, 255], "bytes 0, 0, ff, 0: red");
    t.same(rgb(3, 0), [3, 2, 1, 255], "B, G, R byte order");
    t.same(rgb(4, 0), [6, 5, 4, 255]);
    t.same(rgb(5, 0), [255, 255, 255, 255], "posted white");
    t.same(rgb(6, 0), [0x11, 0x22, 0x33, 255], "write-multi");
    t.same(rgb(7, 0), [0, 0x33, 0x44, 255], "a 2-byte write-multi entry");
    t.same(rgb(63, 47), [0, 0, 255, 255], "written through the mmap");
    t.same(rgb(10, 10), [0, 0, 0, 255], "the rest black (cleared by the mode set)");

    // Panning: the picture follows Y_OFFSET.
    await h.setDispi(Dispi.Y_OFFSET, 1);
    t.same([...decodePng(h.bochs.png()).rgba.subarray(0, 4)], [0, 0, 0, 255], "panned one line down");
    await h.setDispi(Dispi.Y_OFFSET, 0);
    // Big-endian framebuffer (BGRX8888 as the driver names it): bytes X, R, G, B.
    await h.setMmio(Qext.BYTEORDER, 4, BIG_ENDIAN);
    t.same([...decodePng(h.bochs.png()).rgba.subarray(12, 16)], [2, 3, 0, 255], "big-endian reading");
    await h.setMmio(Qext.BYTEORDER, 4, LITTLE_ENDIAN);
    // 16 bpp RGB565 and 24 bpp.
    await h.setDispi(Dispi.ENABLE, 0);
    await h.setDispi(Dispi.BPP, 16);
    await h.setDispi(Dispi.ENABLE, Enable.ENABLED | Enable.LFB_ENABLED);
    await h.client.regionWrite(FB_BAR, 0, le(0xf800, 2));
    await h.client.regionWrite(FB_BAR, 2, le(0x07e0, 2));
    let p = decodePng(h.bochs.png());
    t.same([...p.rgba.subarray(0, 8)], [255, 0, 0, 255, 0, 255, 0, 255], "RGB565 red, green");
    await h.setDispi(Dispi.ENABLE, 0);
    await h.setDispi(Dispi.BPP, 24);
    await h.setDispi(Dispi.ENABLE, Enable.ENABLED | Enable.LFB_ENABLED);
    await h.client.regionWrite(FB_BAR, 0, new Uint8Array([1, 2, 3, 4, 5, 6]));
    p = decodePng(h.bochs.png());
    t.same([...p.rgba.subarray(0, 8)], [3, 2, 1, 255, 6, 5, 4, 255], "24 bpp B, G, R");
    await h.setDispi(Dispi.ENABLE, 0);
    await h.setDispi(Dispi.BPP, 8);
    await h.setDispi(Dispi.ENABLE, Enable.ENABLED | Enable.LFB_ENABLED);
    t.throws(() => h.bochs.png(), /8 bpp/, "8 bpp (palette) cannot be captured");

    // savePng writes a file; reset keeps VRAM and the last mode.
    await driverModeSet(h, 64, 48);
    await h.client.regionWrite(FB_BAR, 0, le(0x0000ff00, 4));
    const dir = mkdtempSync(path.join(tmpdir(), "vfu-bochs-"));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, "shot.png");
    t.same(h.bochs.savePng(file).width, 64);
    t.same([...decodePng(readFileSync(file)).rgba.subarray(0, 4)], [0, 255, 0, 255], "the saved file");
    await h.client.reset();
    t.equal(h.bochs.mode, null, "reset disables the display");
    t.equal(await h.dispi(Dispi.BPP), 8, "and the registers are back to power-on");
    t.same(
      [...decodePng(h.bochs.png()).rgba.subarray(0, 4)],
      [0, 255, 0, 255],
      "the last mode is still captured",
    );
  },
);

t.test("options: mmap=off, bad values", async (t) => {
  const h = await serve({ mmap: "off", vram: "8M" });
  t.teardown(() => h.close());
  const fb = await h.client.getRegionInfo(FB_BAR);
  t.notOk(fb.flags & RegionFlag.MMAP, "mmap=off: BAR0 not mmap-capable");
  t.equal(fb.fd, null, "and no fd");
  t.equal(fb.size, 8n * BigInt(MiB));
  const log = new SinkLogger(new MemorySink(), "info");
  const dma = new DeviceDma(log);
  const refused = (options: Record<string, string>, message: RegExp) =>
    t.throws(() => new PciDevice(bochsDisplay, { dma, log, options }), message, JSON.stringify(options));
  refused(
    { vram: "3M" },
    /option vram=3M is refused \(out of range\); it takes size 4M-256M, a power of two/,
  );
  refused({ vram: "12M" }, /vram=12M is refused \(not a power of two\)/);
  refused({ mmap: "maybe" }, /option mmap=maybe is refused \(not on or off\); it takes on\|off/);
  refused({ mode: "big" }, /mode=big is refused .* WIDTHxHEIGHT, each side 64-4095/);
  refused({ mode: "10x10" }, /mode=10x10 is refused/);
  refused({ edid: "2" }, /edid=2 is refused/);
  t.throws(() => resolveOptions(bochsDisplay, { nope: "1" }), /nope/, "unknown keys refused");
  t.same(
    resolveOptions(bochsDisplay, { vram: "32MiB", mmap: "no" }),
    { vram: 32 * MiB, mmap: false, mode: "1024x768", edid: true },
    "typed values, defaults filled in",
  );
});

t.test("control lines: png, status, errors", async (t) => {
  const h = await serve();
  t.teardown(() => h.close());
  t.equal(h.bochs.command(""), "", "blank line");
  t.equal(h.bochs.command("  # a comment"), "", "comment");
  t.match(h.bochs.command("status"), /disabled, 16 MiB, blanked/);
  t.throws(() => h.bochs.command("png /tmp/x.png"), /no mode has been set/);
  t.throws(() => h.bochs.command("png"), /"png" takes a file name/);
  t.throws(() => h.bochs.command("status please"), /takes no arguments/);
  t.throws(() => h.bochs.command("shoot"), /unknown command "shoot" \(png <file>, status\)/);
  await driverModeSet(h, 64, 48);
  t.match(
    h.bochs.command("status"),
    /64x48x32 virtual width 64 offset \(0, 0\) little-endian, 16 MiB, unblanked/,
  );
  const dir = mkdtempSync(path.join(tmpdir(), "vfu-bochs-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.match(h.bochs.command(`PNG ${dir}/a b.png`), /saved 64x48 PNG/, "a path with a blank");
  t.ok(existsSync(path.join(dir, "a b.png")));
  t.throws(() => h.bochs.command(`png ${dir}/missing/x.png`), /ENOENT/, "an unwritable path");
});

t.test("vfu serve bochs-display --set control=… --set png-on-exit=…", async (t) => {
  const srv = await startCliServer(t, "bochs-display", (dir) => [
    "--set",
    "vram=4M",
    "--set",
    `control=${path.join(dir, "bochs.ctl")}`,
    "--set",
    `png-on-exit=${path.join(dir, "exit.png")}`,
  ]);
  const fifo = path.join(srv.dir, "bochs.ctl");
  const shot = path.join(srv.dir, "shot.png");
  const onExit = path.join(srv.dir, "exit.png");
  const client = await VfioUserClient.connect(srv.socketPath);
  const h = {
    client,
    setDispi: (i: number, v: number) => client.regionWrite(MMIO_BAR, Mmio.DISPI + i * 2, le(v, 2)),
  };
  await h.setDispi(Dispi.BPP, 32);
  await h.setDispi(Dispi.XRES, 64);
  await h.setDispi(Dispi.YRES, 48);
  await h.setDispi(Dispi.ENABLE, Enable.ENABLED | Enable.LFB_ENABLED);
  await client.regionWrite(FB_BAR, 0, le(0x00ff0000, 4));
  writeFileSync(fifo, "bogus\n");
  await waitFor(() => srv.stderr.includes('unknown command "bogus"'), 5000, "the warning");
  t.match(
    srv.stderr,
    /warn\s+\[bochs-display\] control .*: unknown command "bogus"/,
    "a bad line is a warning",
  );
  writeFileSync(fifo, `png ${shot}\n`);
  await waitFor(() => existsSync(shot), 5000, "the PNG");
  const pic = decodePng(readFileSync(shot));
  t.same(
    [pic.width, pic.height, ...pic.rgba.subarray(0, 4)],
    [64, 48, 255, 0, 0, 255],
    "png <file> from the FIFO",
  );
  await client.regionWrite(FB_BAR, 4, le(0x0000ff00, 4));
  client.close();
  t.equal(await srv.stop(), 0, "SIGTERM stops the server");
  const last = decodePng(readFileSync(onExit));
  t.same(
    [...last.rgba.subarray(4, 8)],
    [0, 255, 0, 255],
    "png-on-exit: the last mode shown, after the disconnect reset",
  );
  t.notOk(existsSync(fifo), "the FIFO is removed");
});
