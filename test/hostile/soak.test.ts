// A short soak inside `npm test`: 200 client lifetimes against every device model (see
// scripts/soak.ts), run as its own process with the flags `npm run soak` uses. The script's own
// verdict (fds back to the start, RSS under +10% after warm-up) must be "ok", and the figures it
// prints must say so.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import t from "tap";

const script = fileURLToPath(new URL("../../scripts/soak.ts", import.meta.url));

t.test("200 soak cycles leave no fd behind and do not grow RSS", (t) => {
  const r = spawnSync(
    process.execPath,
    ["--expose-gc", "--max-semi-space-size=2", "--import", "tsx", script, "--cycles", "200", "--quiet"],
    { encoding: "utf8", timeout: 120_000 },
  );
  t.equal(r.status, 0, `exit code 0 (stderr: ${r.stderr.trim() || "none"})`);
  t.match(r.stdout, /^start: +\d+ fds, RSS [\d.]+ MiB/m, "prints the start figures");
  t.match(r.stdout, /^end: +\d+ fds, RSS [\d.]+ MiB/m, "prints the end figures");
  const last = r.stdout.trim().split("\n").at(-1) ?? "";
  const result = JSON.parse(last) as Record<string, number | boolean | string[]>;
  t.comment(last);
  t.equal(result.cycles, 200);
  t.equal(result.fdsEnd, result.fdsStart, "the open-fd count returned to the start");
  t.ok((result.rssGrowthPercent as number) < 10, `RSS grew ${result.rssGrowthPercent}% (< 10%)`);
  t.equal(result.ok, true);
  t.end();
});
