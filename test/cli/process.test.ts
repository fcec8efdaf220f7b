// `vfu` as a process: it is the server itself, so signals to its PID stop it and remove its
// socket; started by npm it also stops when the shell npm ran it in goes; closed stdout or stderr
// never crash it; --log-level and --verbose choose what it logs; device files that cannot be
// served are refused with a message before anything listens.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t, { type Test } from "tap";
import { VfioUserClient } from "../../src/index.ts";
import { repoRoot, startCliServer, vfuPath, waitFor } from "../helpers/cli-server.ts";

/** Run vfu to its end: exit status and output. Runs are independent, so tests start several at
 * once (each start costs a TypeScript loader). */
function vfu(
  args: string[],
  opts: { cwd?: string } = {},
): Promise<{ status: number | null; stderr: string }> {
  const child = spawn(process.execPath, [vfuPath, ...args], {
    cwd: opts.cwd ?? repoRoot,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr += d;
  });
  return new Promise((resolve) => child.on("close", (status) => resolve({ status, stderr })));
}

function tempDir(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), "vfu-process-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const exited = (child: ChildProcess) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null)
      resolve({ code: child.exitCode, signal: child.signalCode });
    else child.on("exit", (code, signal) => resolve({ code, signal }));
  });

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

t.test("SIGTERM, SIGHUP or SIGINT to the vfu process stops it and removes its socket", async (t) => {
  const signals = ["SIGTERM", "SIGHUP", "SIGINT"] as const;
  const servers = await Promise.all(signals.map(() => startCliServer(t, "scratchpad")));
  for (const [i, signal] of signals.entries()) servers[i]!.child.kill(signal);
  for (const [i, signal] of signals.entries()) {
    const srv = servers[i]!;
    t.same(await exited(srv.child), { code: 0, signal: null }, `${signal}: exit 0`);
    t.notOk(existsSync(srv.socketPath), `${signal}: the socket file is gone`);
    t.match(srv.stderr, new RegExp(`${signal}: stopping`));
  }
});

t.test("run by npm (npm_lifecycle_event set), vfu stops when the shell npm started it in dies", async (t) => {
  const dir = tempDir(t);
  const run = (env: NodeJS.ProcessEnv, sock: string) => {
    // `; true` keeps sh from exec-ing node, as npm's `sh -c` chain is: sh stays vfu's parent.
    const sh = spawn(
      "sh",
      ["-c", `"${process.execPath}" "${vfuPath}" serve scratchpad --socket "${sock}"; true`],
      {
        cwd: repoRoot,
        env,
        stdio: "ignore",
      },
    );
    t.teardown(() => sh.kill("SIGKILL"));
    return sh;
  };
  const childOf = (pid: number) => Number(readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim());

  const sock = path.join(dir, "npm.sock");
  const sh = run({ ...process.env, npm_lifecycle_event: "npx" }, sock);
  await waitFor(() => existsSync(sock), 30_000, "the socket");
  const server = childOf(sh.pid!);
  sh.kill("SIGTERM"); // what npm does with a SIGTERM of its own: it passes it to the shell
  await waitFor(() => !alive(server), 10_000, "vfu to stop");
  t.notOk(existsSync(sock), "its socket is removed");

  const other = path.join(dir, "plain.sock");
  const env = { ...process.env };
  delete env.npm_lifecycle_event;
  const sh2 = run(env, other);
  await waitFor(() => existsSync(other), 30_000, "the socket");
  const server2 = childOf(sh2.pid!);
  sh2.kill("SIGTERM");
  await exited(sh2);
  await new Promise((r) => setTimeout(r, 300));
  t.ok(alive(server2), "not started by npm: the server outlives its parent, as any daemon would");
  process.kill(server2, "SIGTERM");
  await waitFor(() => !alive(server2), 10_000, "vfu to stop");
  t.notOk(existsSync(other));
});

t.test("a closed stdout ends a listing quietly: vfu list --options | head -1", async (t) => {
  const r = spawnSync(
    "bash",
    ["-c", `set -o pipefail; "${process.execPath}" "${vfuPath}" list --options | head -1`],
    {
      cwd: repoRoot,
      encoding: "utf8",
      timeout: 60_000,
    },
  );
  t.equal(r.status, 0, "the pipeline succeeds (vfu exits 0)");
  t.equal(r.stderr, "", "no EPIPE trace");
  t.match(r.stdout, /^scratchpad\s+platform/);
  t.equal(r.stdout.split("\n").length, 2, "one line");
  // The same with the pipe closed before vfu writes anything: every write fails with EPIPE.
  const child = spawn(process.execPath, [vfuPath, "list", "--options"], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout!.destroy();
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr += d;
  });
  t.same(await exited(child), { code: 0, signal: null });
  t.equal(stderr, "");
});

t.test("a closed stderr silences the log; the server goes on serving", async (t) => {
  const dir = tempDir(t);
  const sock = path.join(dir, "quiet.sock");
  const child = spawn(process.execPath, [vfuPath, "serve", "scratchpad", "--socket", sock], {
    cwd: repoRoot,
    stdio: ["ignore", "ignore", "pipe"],
  });
  t.teardown(() => child.kill("SIGKILL"));
  child.stderr!.destroy();
  await waitFor(() => existsSync(sock) || child.exitCode !== null, 30_000, "the socket");
  for (let i = 0; i < 3; i++) {
    const c = await VfioUserClient.connect(sock); // each connect and disconnect logs a line
    t.equal(await c.regionRead32(0, 0), 0x56465531);
    c.close();
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGTERM");
  t.same(await exited(child), { code: 0, signal: null });
});

t.test("the log names the client and says why it left", async (t) => {
  const srv = await startCliServer(t, "scratchpad");
  const c = await VfioUserClient.connect(srv.socketPath);
  await waitFor(() => /client connected/.test(srv.stderr), 10_000, "the connect line");
  t.match(
    srv.stderr,
    new RegExp(
      `info  \\[scratchpad\\] client connected: pid ${process.pid} \\(.+\\), uid ${process.getuid!()}, gid ${process.getgid!()}\\n`,
    ),
  );
  c.close();
  await waitFor(() => /client disconnected/.test(srv.stderr), 10_000, "the disconnect line");
  t.match(srv.stderr, /info {2}\[scratchpad\] client disconnected: the client closed the connection\n/);
  const c2 = await VfioUserClient.connect(srv.socketPath);
  await c2.regionRead32(0, 0);
  t.equal(await srv.stop(), 0);
  t.match(srv.stderr, /client disconnected: the server is stopping/);
  c2.close();
});

t.test("--log-level and --verbose choose what is logged", async (t) => {
  const session = async (args: string[]) => {
    const srv = await startCliServer(t, "scratchpad", () => args);
    const c = await VfioUserClient.connect(srv.socketPath);
    await c.regionRead32(0, 0);
    await c.regionRead32(0, 0x1000).catch(() => {}); // refused: outside the region
    await c.getRegionInfo(99).catch(() => {}); // no such region: a debug line
    c.close();
    await new Promise((r) => setTimeout(r, 200));
    await srv.stop();
    return srv.stderr.split("\n").filter(Boolean);
  };
  const levels = (ls: string[]) => new Set(ls.map((l) => l.split(/\s+/)[1]));

  const [info, warn, error, debug, verbose] = await Promise.all([
    session([]),
    session(["--log-level", "warn"]),
    session(["--log-level=error"]),
    session(["--log-level", "debug"]),
    session(["--verbose"]),
  ]);
  t.same([...levels(info)].sort(), ["info", "warn"], "default: info and warnings");
  t.ok(
    info.some((l) =>
      /warn {2}\[scratchpad\] refused REGION_READ id=\d+: EINVAL: access \[4096, \+4\)/.test(l),
    ),
    "a refused access is logged at the default level with its reason",
  );

  t.same([...levels(warn)], ["warn"], "warn: only the refusal");

  t.same(error, [], "error: nothing went wrong, nothing is logged");

  t.ok(
    debug.some((l) => /debug \[scratchpad\] DEVICE_GET_REGION_INFO id=\d+ failed: EINVAL/.test(l)),
    "debug lines",
  );
  t.notOk(
    debug.some((l) => / <- /.test(l)),
    "but no message trace without --verbose",
  );

  t.ok(
    verbose.some((l) => /debug \[scratchpad\] <- REGION_READ id=\d+ region=0 offset=0x0 count=4$/.test(l)),
    "--verbose: each message decoded",
  );
  t.ok(
    verbose.some((l) =>
      /debug \[scratchpad\] -> REGION_READ reply id=\d+ region=0 offset=0x0 count=4 value=0x56465531$/.test(
        l,
      ),
    ),
  );

  const [bad, unknown] = await Promise.all([
    vfu(["--verbose", "--log-level", "info", "serve", "scratchpad", "--socket", "/tmp/x.sock"]),
    vfu(["--log-level", "loud", "list"]),
  ]);
  t.equal(bad.status, 2);
  t.match(bad.stderr, /--verbose logs at the debug level; it contradicts --log-level info/);
  t.equal(unknown.status, 2);
  t.match(unknown.stderr, /--log-level is one of error, warn, info, debug, not "loud"/);
});

t.test("device files that cannot be served are refused before anything listens", async (t) => {
  const dir = tempDir(t);
  writeFileSync(path.join(dir, "not-a-device.mjs"), "export default { name: 'x' };\n");
  writeFileSync(path.join(dir, "throws.mjs"), "throw new Error('broken on purpose');\n");
  const first = path.join(dir, "first.sock");
  const cases: [string[], RegExp][] = [
    [["serve", "./missing.mjs", "--socket", first], /vfu: \.\/missing\.mjs: no such file/],
    [["serve", "./not-a-device.mjs", "--socket", first], /its default export is not a device definition/],
    [["serve", "./throws.mjs", "--socket", first], /\.\/throws\.mjs: cannot load it: broken on purpose/],
    [
      ["serve", "nope", "--socket", first],
      /unknown device "nope" \(available: .*scratchpad.*; or give a file/,
    ],
    [
      [
        "serve",
        "scratchpad",
        "--socket",
        first,
        "serve",
        "./not-a-device.mjs",
        "--socket",
        path.join(dir, "b.sock"),
      ],
      /not a device definition/,
    ],
    [
      [
        "serve",
        "scratchpad",
        "--socket",
        first,
        "serve",
        `${repoRoot}/examples/counter.mjs`,
        "--socket",
        path.join(dir, "c.sock"),
        "--set",
        "limt=2",
      ],
      /device counter has no option "limt" \(it has: limit\)/,
    ],
  ];
  const results = await Promise.all(cases.map(([args]) => vfu(args, { cwd: dir })));
  for (const [i, [args, message]] of cases.entries()) {
    t.equal(results[i]!.status, 2, args.join(" "));
    t.match(results[i]!.stderr, message, args.join(" "));
  }
  t.notOk(existsSync(first), "no socket was created");
});
