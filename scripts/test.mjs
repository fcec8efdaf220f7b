#!/usr/bin/env node
// `npm test`: every check the project makes, in one run, ending with one plain line
// `N passed, N failed` (tap's own last line is a timing line, so the counts are summed here).
//
// Steps: the TypeScript check (tsc --noEmit) and Biome count as one test each; the unit suite
// (tap, test/**); then the end-to-end suite with a real QEMU guest (scripts/qemu/run-e2e.mjs,
// which installs its Debian chroot on first use). VFU_SKIP_QEMU=1 leaves the QEMU suite out
// (the line then says so). The summary is also written to artifacts/test-summary.txt.
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => path.join(root, "node_modules", ".bin", name);

function run(label, cmd, args, env = {}) {
  return new Promise((resolve) => {
    process.stdout.write(`\n=== ${label}: ${[cmd, ...args].join(" ")}\n`);
    const child = spawn(cmd, args, {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      process.stdout.write(d);
    });
    child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), out }));
  });
}

/** Counts from tap's closing `# { total: N, pass: N, fail: N, ... }` line. */
function tapCounts(out) {
  const lines = out.split("\n").filter((l) => l.startsWith("# { total:"));
  const last = lines.at(-1);
  if (!last) return null;
  const num = (k) => Number((last.match(new RegExp(`${k}: (\\d+)`)) ?? [0, 0])[1]);
  return { pass: num("pass"), fail: num("fail"), skip: num("skip") };
}

let passed = 0;
let failed = 0;
let skipped = 0;
const notes = [];

async function check(label, cmd, args) {
  const r = await run(label, cmd, args);
  if (r.code === 0) passed++;
  else {
    failed++;
    notes.push(`${label} failed (exit ${r.code})`);
  }
}

async function suite(label, cmd, args, env) {
  const r = await run(label, cmd, args, env);
  const c = tapCounts(r.out);
  if (!c) {
    failed++;
    notes.push(`${label}: no test summary (exit ${r.code})`);
    return;
  }
  passed += c.pass;
  failed += c.fail;
  skipped += c.skip;
  if (r.code !== 0 && c.fail === 0) {
    failed++;
    notes.push(`${label} exited ${r.code} with no failing assertion (a test file crashed or timed out)`);
  }
}

await check("typecheck", bin("tsc"), ["--noEmit"]);
await check("lint", bin("biome"), ["check", "."]);
await suite("unit tests", bin("tap"), []);
if (process.env.VFU_SKIP_QEMU === "1") {
  notes.push("QEMU end-to-end suite skipped (VFU_SKIP_QEMU=1)");
} else {
  await suite("QEMU end-to-end tests", process.execPath, [path.join(root, "scripts/qemu/run-e2e.mjs")]);
}

if (skipped) notes.push(`${skipped} skipped (counted in neither figure below)`);
for (const n of notes) process.stdout.write(`# ${n}\n`);
// Exactly `N passed, N failed`: CI reads this line as it is.
const line = `${passed} passed, ${failed} failed`;
mkdirSync(path.join(root, "artifacts"), { recursive: true });
writeFileSync(path.join(root, "artifacts", "test-summary.txt"), `${line}\n`);
process.stdout.write(`${line}\n`);
process.exit(failed === 0 ? 0 : 1);
