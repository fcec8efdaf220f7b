// `--set` on the command line: every serve group's options are parsed and checked before any
// socket listens, so a bad value in a later group leaves no earlier group serving; the error
// names the device, the key, the value and what the option takes. `vfu list --options` prints
// the same declarations.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { deviceModels } from "../../devices/index.ts";
import { formatOptions } from "../../src/index.ts";
import { repoRoot, vfuPath } from "../helpers/cli-server.ts";

function vfu(...args: string[]) {
  return spawnSync(process.execPath, [vfuPath, ...args], {
    cwd: repoRoot,
    encoding: "utf8",
    timeout: 60_000,
  });
}

const BAD_LATER_GROUP: [string, string[], RegExp][] = [
  [
    "dma-mask=banana (was 'Cannot convert banana to a BigInt')",
    ["edu", "--set", "dma-mask=banana"],
    /^vfu: device edu: option dma-mask=banana is refused \(not an integer\); it takes integer 0x1-0xffffffffffffffff, a mask of low bits$/m,
  ],
  [
    // bochs-display checked mode while building the device, after earlier groups listened.
    "a bochs-display mode",
    ["bochs-display", "--set", "mode=big"],
    /^vfu: device bochs-display: option mode=big is refused \(not WIDTHxHEIGHT, each side 64-4095\); it takes WIDTHxHEIGHT, each side 64-4095$/m,
  ],
  [
    "a vram size",
    ["bochs-display", "--set", "vram=3M"],
    /^vfu: device bochs-display: option vram=3M is refused \(out of range\); it takes size 4M-256M, a power of two$/m,
  ],
  [
    "a disk in a missing directory",
    ["nvme", "--set", "disk=/nonexistent-vfu-dir/disk.img"],
    /^vfu: device nvme: option disk=\/nonexistent-vfu-dir\/disk.img is refused \(directory \/nonexistent-vfu-dir does not exist\); it takes path$/m,
  ],
];

for (const [what, later, message] of BAD_LATER_GROUP) {
  t.test(
    `a bad option in a later serve group stops the command before any socket listens: ${what}`,
    async (t) => {
      const dir = mkdtempSync(path.join(tmpdir(), "vfu-cli-options-"));
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      const first = path.join(dir, "first.sock");
      const r = vfu(
        "serve",
        "scratchpad",
        "--socket",
        first,
        "serve",
        ...later,
        "--socket",
        path.join(dir, "later.sock"),
      );
      t.equal(r.status, 2, "exit status 2");
      t.match(r.stderr, message, "the error names the device, the key, the value and what it takes");
      t.notMatch(r.stderr, /serving /, "no group was served");
      t.notOk(existsSync(first), "the first group's socket was never created");
    },
  );
}

// Regression: scratch=xyz was served as SCRATCH = 0.
t.test("vfu serve scratchpad --set scratch=xyz is refused", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "vfu-cli-options-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = vfu("serve", "scratchpad", "--socket", path.join(dir, "s.sock"), "--set", "scratch=xyz");
  t.equal(r.status, 2);
  t.match(r.stderr, /^vfu: device scratchpad: option scratch=xyz is refused \(not an integer\)/m);
});

t.test("vfu list --options prints every device's declarations as formatOptions does", async (t) => {
  const r = vfu("list", "--options");
  t.equal(r.status, 0, r.stderr);
  for (const d of deviceModels) {
    t.ok(
      r.stdout.includes(`  ${d.summary}\n${formatOptions(d.options)}`),
      `${d.name}: its options under its line`,
    );
  }
  t.match(
    r.stdout,
    /^ {4}size=64M +size, a multiple of 4K +create\/extend the image/m,
    "a size with its rule",
  );
  t.match(r.stdout, /^ {4}lba=512 +512\|4096 +logical block size/m, "an enum's values");
  t.match(r.stdout, /^ {4}dma-mask=0xfffffff +integer 0x1-0xffffffffffffffff, a mask of low bits +DMA/m);
  t.match(r.stdout, /^ {4}mmap=on +on\|off +on: offer BAR0/m, "a boolean shown as on/off");
  t.match(r.stdout, /^ {4}control +path +FIFO/m, "an option without a default: its key alone");
});
