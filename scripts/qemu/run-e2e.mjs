#!/usr/bin/env node
// `npm run test:qemu`: make or verify the QEMU chroot, then run the QEMU end-to-end tests with
// tap, passing its exit code through. Extra arguments go to tap (e.g. a single test file).
// VFU_SKIP_QEMU=1 skips the chroot set-up; the tests then skip themselves.

import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const args = process.argv.slice(2);

if (args.includes("-h") || args.includes("--help")) {
  process.stdout.write(
    "usage: node scripts/qemu/run-e2e.mjs [TEST_FILE...] [TAP_ARGS...]\n" +
      "Runs scripts/qemu/setup-chroot.sh, then tap on test/e2e/qemu/ (or on the files given).\n",
  );
  process.exit(0);
}

const env = { ...process.env };
if (env.VFU_SKIP_QEMU === "1") {
  process.stderr.write("[run-e2e] VFU_SKIP_QEMU=1: not setting up the chroot; the QEMU tests will skip\n");
} else {
  const t0 = performance.now();
  const setup = spawnSync("bash", [path.join(here, "setup-chroot.sh")], {
    cwd: root,
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
  });
  if (setup.error) {
    process.stderr.write(`[run-e2e] could not run setup-chroot.sh: ${setup.error.message}\n`);
    process.exit(1);
  }
  if (setup.status !== 0) {
    process.stderr.write(
      `[run-e2e] setup-chroot.sh failed (exit ${setup.status}); not running the QEMU tests\n`,
    );
    process.exit(setup.status ?? 1);
  }
  const chroot = setup.stdout.trim().split("\n").at(-1);
  env.VFU_QEMU_CHROOT = chroot;
  process.stderr.write(`[run-e2e] chroot ${chroot} ready (${Math.round(performance.now() - t0)} ms)\n`);
}

// TypeScript 6 makes ts-node (tap's TypeScript loader) fail with TS5011 unless rootDir is set;
// the project's tsconfig.json does not set it, so give it here (an explicit setting wins).
env.TS_NODE_COMPILER_OPTIONS ??= JSON.stringify({ rootDir: root });

const files = args.filter((a) => !a.startsWith("-"));
const rest = args.filter((a) => a.startsWith("-"));
// .taprc excludes test/e2e/qemu/** from the unit run; clear that exclude here.
const tapArgs = [
  "tap",
  "--exclude=__no_exclude__/**",
  "--timeout=300",
  "--jobs=1",
  ...rest,
  ...(files.length ? files : ["test/e2e/qemu/"]),
];
const tap = spawnSync("npx", tapArgs, { cwd: root, stdio: "inherit", env });
if (tap.error) {
  process.stderr.write(`[run-e2e] could not run tap: ${tap.error.message}\n`);
  process.exit(1);
}
process.exit(tap.status ?? 1);
