// `vfu describe` and `vfu list` with the PL061 registered, and `vfu serve pl061 --set inputs=…`
// reached by the TypeScript client: the command line as a user runs it (node bin/vfu.js).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { DESCRIBE_HELP, MAIN_HELP, parseArgs, UsageError } from "../../cli/args.ts";
import { pl061, Reg } from "../../devices/pl061/index.ts";
import { describeDevice, renderDts, VfioUserClient } from "../../src/index.ts";
import { repoRoot, startCliServer, vfuPath } from "../helpers/cli-server.ts";

function vfu(...args: string[]) {
  return spawnSync(process.execPath, [vfuPath, ...args], {
    cwd: repoRoot,
    encoding: "utf8",
    timeout: 60_000,
  });
}

t.test("parseArgs: describe", async (t) => {
  t.same(parseArgs(["describe", "pl061"]), { kind: "describe", device: "pl061", json: false });
  t.same(parseArgs(["describe", "pl061", "--json"]), { kind: "describe", device: "pl061", json: true });
  t.same(parseArgs(["describe", "--json", "pl061"]), { kind: "describe", device: "pl061", json: true });
  t.same(parseArgs(["describe", "--help"]), { kind: "help", topic: "describe" });
  t.same(parseArgs(["help", "describe"]), { kind: "help", topic: "describe" });
  t.throws(() => parseArgs(["describe"]), UsageError);
  t.throws(() => parseArgs(["describe", "pl061", "scratchpad"]), /takes one device/);
  t.throws(() => parseArgs(["describe", "--dts"]), /unknown argument "--dts"/);
  t.throws(() => parseArgs(["help", "nope"]), /serve, list and describe/);
  t.match(MAIN_HELP, /vfu describe <device> \[--json\]/);
  t.match(MAIN_HELP, /describe {2}print a platform device's device-tree description/);
  t.match(MAIN_HELP, /vfu help \[serve\|list\|describe\]/);
  t.match(DESCRIBE_HELP, /--json/);
});

t.test("vfu describe pl061 prints the DTS the device serves", async (t) => {
  const r = vfu("describe", "pl061");
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, pl061.dts);
  t.equal(r.stdout, renderDts(describeDevice(pl061)));
  const j = vfu("describe", "pl061", "--json");
  t.equal(j.status, 0, j.stderr);
  t.same(JSON.parse(j.stdout), describeDevice(pl061));
});

t.test("vfu describe refuses unknown devices with the list of known ones", async (t) => {
  const r = vfu("describe", "nope");
  t.equal(r.status, 2);
  t.match(r.stderr, /unknown device "nope" \(available: .*pl061/);
  const h = vfu("help", "describe");
  t.equal(h.status, 0);
  t.equal(h.stdout, DESCRIBE_HELP);
});

t.test("vfu list includes pl061 as a platform device", async (t) => {
  const r = vfu("list");
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /^pl061\s+platform\s+ARM PrimeCell PL061 GPIO/m);
  t.match(r.stdout, /^scratchpad\s+platform/m);
  t.notMatch(r.stdout, /^ {4}inputs/m, "no options without --options");
  const o = vfu("list", "--options");
  t.equal(o.status, 0, o.stderr);
  t.match(
    o.stdout,
    /^pl061 .*\n {4}inputs=0x0 {2}integer 0x0-0xff {2}input levels at start/m,
    "each option under its device, with its default and what it takes",
  );
  t.match(o.stdout, /^pci-testdev .*\n {4}\(no options\)$/m, "a device without options says so");
  const bad = vfu("list", "nvme");
  t.equal(bad.status, 2);
  t.match(bad.stderr, /takes only --options/);
});

t.test("vfu serve pl061 --set inputs=0x05: the client reads the levels and the DTS", async (t) => {
  const srv = await startCliServer(t, "pl061", () => ["--set", "inputs=0x05"]);
  const client = await VfioUserClient.connect(srv.socketPath);
  t.equal(await client.regionRead32(0, 0x3fc), 0x05, "inputs 0 and 2 high");
  t.equal(await client.regionRead32(0, Reg.PERIPH_ID0), 0x61);
  t.equal(await client.readDeviceTree(), pl061.dts);
  client.close();
  t.equal(await srv.stop(), 0, "SIGTERM stops the server cleanly");
});

t.test("vfu serve pl061 with a bad inputs value fails with the reason", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "vfu-cli-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = vfu("serve", "pl061", "--socket", path.join(dir, "x.sock"), "--set", "inputs=0x100");
  t.equal(r.status, 2);
  t.match(
    r.stderr,
    /^vfu: device pl061: option inputs=0x100 is refused \(out of range\); it takes integer 0x0-0xff$/m,
  );
  const u = vfu("serve", "pl061", "--socket", path.join(dir, "x.sock"), "--set", "pins=1");
  t.equal(u.status, 2);
  t.match(u.stderr, /no option "pins" \(it has: inputs\)/);
});
