// `vfu serve …` as a user runs it (node bin/vfu.js), for tests that drive the command line: the
// server process is started in a fresh temporary directory, the test waits for its socket, and
// the teardown stops it (SIGTERM) and removes the directory whatever the test did.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Test } from "tap";

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
export const vfuPath = path.join(repoRoot, "bin", "vfu.js");

/** Poll `cond` every 20 ms; throws naming `what` after `ms`. */
export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface CliServer {
  child: ChildProcess;
  /** The temporary directory the socket lives in (removed by the teardown). */
  dir: string;
  socketPath: string;
  /** Everything the server wrote to stderr so far (its log). */
  readonly stderr: string;
  /** The exit code once the process is gone. */
  exited: Promise<number | null>;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Start `vfu serve <device> --socket <dir>/<device>.sock …args` (<device> a built-in name or a
 * device file, relative to the repository); `args(dir)` may name files in
 * the directory (a control FIFO, a PNG). Resolves once the socket exists, with one assertion that
 * the process is still running (its stderr attached when not).
 */
export async function startCliServer(
  t: Test,
  device: string,
  args: (dir: string) => string[] = () => [],
): Promise<CliServer> {
  // A device file (./examples/counter.mjs) names its socket after the file.
  const name = path.basename(device).replace(/\.[cm]?[jt]s$/, "");
  const dir = mkdtempSync(path.join(tmpdir(), `vfu-cli-${name}-`));
  const socketPath = path.join(dir, `${name}.sock`);
  const child = spawn(process.execPath, [vfuPath, "serve", device, "--socket", socketPath, ...args(dir)], {
    cwd: repoRoot,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    return exited;
  };
  t.teardown(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await waitFor(() => existsSync(socketPath) || child.exitCode !== null, 30_000, "the socket");
  t.equal(child.exitCode, null, "the server is running", { stderr });
  return {
    child,
    dir,
    socketPath,
    get stderr() {
      return stderr;
    },
    exited,
    stop,
  };
}
