// bochs-display (devices/bochs-display) served from this test process to a real QEMU 11.1 guest,
// two boots:
// 1. mmap=on (the default): the guest's own `bochs` DRM driver binds (ID, VRAM size, EDID,
//    extension registers), fbdev emulation gives /dev/fb0 and fbcon draws the text console into
//    our BAR0; the guest writes known text to /dev/tty0 and the test takes a PNG on the server
//    side (kept as artifacts/bochs-display-console.png) and checks, cell by cell, that the text
//    rows carry foreground pixels where the characters are, in the VT's colours, and that the
//    rest is background. Before the driver loads, a static guest program times 16-bit stores to
//    a BAR2 register: trapped and NOT posted (a round trip each), because BAR0 is mmap-capable.
// 2. mmap=off: no region is mmap-capable, so QEMU posts MMIO writes and, once more than 1024 are
//    queued, coalesces them into REGION_WRITE_MULTI. The guest floods the BAR2 register with
//    1, 2, … N; the device side records every write the server applies and checks the sequence
//    arrived complete and in order, and counts the REGION_WRITE_MULTI messages (server verbose
//    log). A 64 KiB fill of BAR0 (trapped now) must land in VRAM word for word.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t, { type Test } from "tap";
import { decodePng } from "../../../devices/bochs-display/framebuffer.ts";
import { type BochsDisplayBehaviour, bochsDisplay, MMIO_BAR } from "../../../devices/bochs-display/index.ts";
import { bootGuest, buildInitramfs, setupChroot } from "../../../scripts/qemu/boot.mjs";
import {
  bochsInit,
  buildMmioWrites,
  CONSOLE_TEXT,
  parseMmioWrites,
  SEQ_OFFSET,
} from "../../../scripts/qemu/guest/bochs.mjs";
import { PciDevice, Server, SinkLogger } from "../../../src/index.ts";

const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));
const ARTIFACT = path.join(repoRoot, "artifacts", "bochs-display-console.png");
const MODULES = ["bochs"];
const SEQ_ON = 2000; // round trips: keep it short
const SEQ_OFF = 20_000; // posted: enough to queue well past QEMU's 1024
const FILL = 64 * 1024;

/** Counts messages by command from the server's verbose log; keeps the other lines. */
class CountingSink {
  readonly commands = new Map<string, number>();
  readonly lines: string[] = [];
  write(level: string, line: string): void {
    const m = / <- ([A-Z_]+) id=/.exec(line);
    if (m) this.commands.set(m[1]!, (this.commands.get(m[1]!) ?? 0) + 1);
    else if (level !== "debug" || !line.includes(" -> ")) this.lines.push(`${level} ${line}`);
  }
}

interface Boot {
  r: Awaited<ReturnType<typeof bootGuest>>;
  counts: Map<string, number>;
  seq: number[];
  screen: Buffer | null;
  screenState: string;
  bochs: BochsDisplayBehaviour;
  /** BAR0's first FILL bytes, copied before the server (and the mapping) goes away. */
  vramHead: Uint8Array;
  logs: string[];
}

if (process.env.VFU_SKIP_QEMU === "1") {
  t.skip("QEMU end-to-end tests: skipped because VFU_SKIP_QEMU=1", () => {});
} else {
  const work = mkdtempSync(path.join(tmpdir(), "vfu-e2e-bochs-"));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  let chroot = "";
  let program = "";

  t.before(async () => {
    chroot = await setupChroot({ quiet: true });
    program = buildMmioWrites(work);
  });

  const boot = async (name: string, options: Record<string, string>, init: string): Promise<Boot> => {
    const built = buildInitramfs({
      chroot,
      out: path.join(work, `${name}.cpio.gz`),
      initText: init,
      modules: MODULES,
      files: [{ src: program, dest: "bin/mmio-writes", mode: 0o755 }],
    });
    const dir = mkdtempSync(path.join(work, `${name}-`));
    const socketPath = path.join(dir, "bochs.sock");
    const sink = new CountingSink();
    const log = new SinkLogger(sink, "debug");
    const server = new Server({ log });
    let device: PciDevice<BochsDisplayBehaviour> | undefined;
    const seq: number[] = [];
    server.listen(
      (dma, devLog) => {
        device = new PciDevice(bochsDisplay, { dma, log: devLog, options });
        // Every write the server applies to the BAR2 register, in the order applied.
        const write = device.write.bind(device);
        device.write = (index, offset, data) => {
          if (index === MMIO_BAR && offset === BigInt(SEQ_OFFSET) && data.length === 2)
            seq.push(data[0]! | (data[1]! << 8));
          return write(index, offset, data);
        };
        return device;
      },
      { socketPath, log: log.child("[bochs-display]"), verbose: true },
    );
    let screen: Buffer | null = null;
    let screenState = "";
    try {
      const r = await bootGuest({
        chroot,
        initramfs: built.initramfs,
        sockets: [socketPath],
        timeoutMs: 240_000,
        onWait: async (token) => {
          if (token !== "screen") return;
          // fbdev copies its shadow buffer to VRAM from a worker: wait until the title is there.
          const b = device!.behaviour;
          const end = Date.now() + 20_000;
          for (;;) {
            try {
              screen = b.png();
              if (cellInk(decodePng(screen), 0, 0).ink > 0 || Date.now() > end) break;
            } catch (err) {
              screenState = (err as Error).message;
              if (Date.now() > end) break;
            }
            await new Promise((res) => setTimeout(res, 250));
          }
          screenState = `${b.status()} ${screenState}`;
          mkdirSync(path.dirname(ARTIFACT), { recursive: true });
          b.savePng(ARTIFACT);
        },
      });
      const bochs = device!.behaviour;
      return {
        r,
        counts: sink.commands,
        seq,
        screen,
        screenState,
        bochs,
        vramHead: bochs.vram.slice(0, FILL),
        logs: sink.lines,
      };
    } finally {
      await server.close();
    }
  };

  /** The guest's stores are 1..n, in order, first; after them only the driver's BANK = 0 writes. */
  const checkSequence = (t: Test, b: Boot, n: number) => {
    let firstBad = -1;
    for (let i = 0; i < n; i++)
      if (b.seq[i] !== ((i + 1) & 0xffff)) {
        firstBad = i;
        break;
      }
    t.equal(firstBad, -1, `all ${n} stores arrived, in order: 1, 2, 3, …`, {
      got: b.seq.length,
      around: b.seq.slice(Math.max(0, firstBad - 3), firstBad + 3),
    });
    t.same(
      b.seq.slice(n).filter((v) => v !== 0),
      [],
      `nothing else but the driver's BANK = 0 (${b.seq.length - n} of them)`,
    );
  };

  const common = (t: Test, b: Boot) => {
    const context = { consoleTail: b.r.lines.slice(-60).join("\n"), qemuStderr: b.r.stderr };
    t.equal(b.r.timedOut, false, "QEMU did not time out", context);
    t.equal(b.r.panicked, false, "no kernel panic", context);
    t.equal(b.r.ended, true, "VFU-END seen", context);
    const entry = b.r.pci.find((p) => p.vendor === "1234" && p.device === "1111");
    t.ok(entry, "1234:1111 enumerated", context);
    t.equal(entry?.class, "038000", "display controller, other");
    t.equal(entry?.bars[0]?.size, 16n << 20n, "BAR0 16 MiB");
    t.equal(entry?.bars[0]?.prefetchable, true, "prefetchable");
    t.equal(entry?.bars[2]?.size, 4096n, "BAR2 4 KiB");
  };

  t.test("mmap=on: the bochs driver binds and fbcon draws the console into BAR0", async (t) => {
    const b = await boot(
      "console",
      { mode: "640x480" },
      bochsInit({ seqCount: SEQ_ON, fillBytes: FILL, console: true }),
    );
    common(t, b);
    const res = b.r.results;
    t.equal(res.driver, "bochs-drm", "the bochs driver bound", {
      dmesg: b.r.lines.filter((l) => l.includes("VFU-DMESG")),
    });
    t.match(res.fb ?? "", /^bochs-drmdrmfb 640,\d+ 32$/, "fb0: 640 wide (the EDID's preferred mode), 32 bpp");
    t.match(b.r.lines.join("\n"), /Found bochs VGA, ID 0xb0c5/, "the driver read our ID");
    t.notMatch(b.r.lines.join("\n"), /Size mismatch|ID mismatch/, "VRAM size agreed with BAR0");
    t.equal(b.bochs.lastMode?.xres, 640, "mode 640 wide");
    t.equal(b.bochs.lastMode?.yres, 480, "480 high");
    t.equal(b.bochs.lastMode?.bpp, 32);
    t.equal(b.bochs.bigEndian, false, "XRGB8888, little-endian");

    t.ok(b.screen, `a PNG was taken (${b.screenState})`);
    const pic = decodePng(b.screen!);
    t.same([pic.width, pic.height], [640, 480]);
    const { title, xs, green } = CONSOLE_TEXT;
    const cols = 80;
    const rows = 30;
    const inked = (row: number) =>
      Array.from({ length: cols }, (_, c) => (cellInk(pic, row, c).ink > 0 ? "#" : ".")).join("");
    const expectRow = (n: number, from: number, to: number) =>
      Array.from({ length: cols }, (_, c) => (c >= from && c < to && c - from < n ? "#" : ".")).join("");
    t.equal(
      inked(0),
      expectRow(title.length, 0, title.length),
      "row 0: the title's 22 cells have ink, nothing after",
    );
    t.equal(inked(1), ".".repeat(cols), "row 1 empty");
    t.equal(
      inked(xs.row),
      expectRow(xs.count, xs.column, xs.column + xs.count),
      "row 2: ten X at columns 10-19",
    );
    t.equal(inked(green.row), expectRow(green.text.length, 0, green.text.length), "row 4: GREEN");
    let blank = 0;
    for (let r = 5; r < rows; r++) if (inked(r) === ".".repeat(cols)) blank++;
    t.equal(blank, rows - 5, "rows 5-29 are background");
    t.same(cellInk(pic, 0, 0).colours, ["170,170,170"], "text in the VT's default light grey");
    t.same(
      cellInk(pic, green.row, 0).colours,
      ["85,255,85"],
      "GREEN in bright green: channels in the right order",
    );
    t.same(cellInk(pic, 1, 0).background, ["0,0,0"], "on black");
    t.comment(`screen: ${b.screenState}; PNG kept at ${ARTIFACT}`);

    const seq = parseMmioWrites(res.seq);
    t.ok(seq, `seq result parsed: ${res.seq}`);
    checkSequence(t, b, SEQ_ON);
    t.equal(
      b.counts.get("REGION_WRITE_MULTI") ?? 0,
      0,
      "no REGION_WRITE_MULTI: with an mmap-capable region QEMU posts nothing",
    );
    const fill = parseMmioWrites(res.fill);
    t.ok(fill, `fill result parsed: ${res.fill}`);
    t.comment(
      `mmap=on: ${SEQ_ON} BAR2 stores in ${(seq!.ns / 1e6).toFixed(1)} ms (${(seq!.nsPerStore / 1000).toFixed(1)} us each, round trips); ` +
        `${FILL / 1024} KiB BAR0 fill in ${(fill!.ns / 1e6).toFixed(2)} ms (mmapped); ` +
        `messages: ${JSON.stringify(Object.fromEntries(b.counts))}; boot ${b.r.durationMs} ms`,
    );
  });

  t.test(
    "mmap=off: QEMU posts and coalesces into REGION_WRITE_MULTI; nothing lost or reordered",
    async (t) => {
      const b = await boot(
        "flood",
        { mmap: "off" },
        bochsInit({ seqCount: SEQ_OFF, fillBytes: FILL, console: false }),
      );
      common(t, b);
      const res = b.r.results;
      const seq = parseMmioWrites(res.seq);
      t.ok(seq, `seq result parsed: ${res.seq}`);
      checkSequence(t, b, SEQ_OFF);
      const multi = b.counts.get("REGION_WRITE_MULTI") ?? 0;
      const single = b.counts.get("REGION_WRITE") ?? 0;
      t.ok(multi > 0, `REGION_WRITE_MULTI received (${multi} messages)`);
      // The fill: 16384 words 0xA5000000 + i at BAR0 + 0, trapped and posted, in VRAM now.
      const fill = parseMmioWrites(res.fill);
      t.ok(fill, `fill result parsed: ${res.fill}`);
      const dv = new DataView(b.vramHead.buffer);
      let wrong = 0;
      for (let i = 0; i < FILL / 4; i++) if (dv.getUint32(i * 4, true) !== (0xa5000000 + i) >>> 0) wrong++;
      t.equal(wrong, 0, "every BAR0 word landed in VRAM");
      t.comment(
        `mmap=off: ${SEQ_OFF} BAR2 stores in ${(seq!.ns / 1e6).toFixed(1)} ms (${(seq!.nsPerStore / 1000).toFixed(2)} us each, posted); ` +
          `${FILL / 1024} KiB BAR0 fill in ${(fill!.ns / 1e6).toFixed(1)} ms (trapped, posted); ` +
          `REGION_WRITE_MULTI ${multi}, REGION_WRITE ${single}; messages: ${JSON.stringify(Object.fromEntries(b.counts))}; boot ${b.r.durationMs} ms`,
      );
    },
  );
}

/** Ink in one 8x16 character cell: how many pixels differ from the cell's corner colour (black
 * background), and the distinct colours seen. */
function cellInk(
  pic: { width: number; height: number; rgba: Uint8Array },
  row: number,
  col: number,
): { ink: number; colours: string[]; background: string[] } {
  const colours = new Set<string>();
  const background = new Set<string>();
  let ink = 0;
  for (let y = row * 16; y < row * 16 + 16 && y < pic.height; y++)
    for (let x = col * 8; x < col * 8 + 8 && x < pic.width; x++) {
      const o = (y * pic.width + x) * 4;
      const c = `${pic.rgba[o]},${pic.rgba[o + 1]},${pic.rgba[o + 2]}`;
      if (c === "0,0,0") background.add(c);
      else {
        ink++;
        colours.add(c);
      }
    }
  return { ink, colours: [...colours], background: [...background] };
}
