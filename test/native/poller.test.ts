// The Poller: uv_poll on Node's loop, its lifecycle, and its exceptions.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import t from "tap";
import { native, PollEvent } from "../../native/index.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const addonUrl = new URL("../../native/index.ts", import.meta.url).href;

/** Open fds of this process (compare counts before and after). */
function openFdCount(): number {
  return readdirSync("/proc/self/fd").length;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function pair(t: { teardown(fn: () => void): void }): [number, number] {
  const [a, b] = native.socketPair();
  t.teardown(() => {
    native.close(a);
    native.close(b);
  });
  return [a, b];
}

t.test("a readable callback fires, and stops firing after stop() and close()", async (t) => {
  const [a, b] = pair(t);
  const seen: Array<[number, number]> = [];
  let wake: () => void = () => {};
  const poller = new native.Poller(a, (status, events) => {
    seen.push([status, events]);
    wake();
  });
  const fired = new Promise<void>((resolve) => {
    wake = resolve;
  });
  poller.start(PollEvent.READABLE);
  native.sendMsg(b, Buffer.from("ping"), 0, 4, []);
  await fired;
  t.same(seen[0], [0, PollEvent.READABLE]);

  poller.stop();
  const count = seen.length;
  await sleep(20);
  t.equal(seen.length, count, "no callbacks while stopped, though data is still pending");

  poller.start(PollEvent.READABLE);
  await sleep(20);
  t.ok(seen.length > count, "level-triggered: a restart reports the pending data again");
  t.equal(native.recvMsg(a, Buffer.alloc(8), 0, 8, 0)?.bytes, 4);

  poller.close();
  const closedCount = seen.length;
  native.sendMsg(b, Buffer.from("more"), 0, 4, []);
  await sleep(20);
  t.equal(seen.length, closedCount, "no callbacks after close");
  t.doesNotThrow(() => poller.close(), "close is idempotent");
  t.doesNotThrow(() => poller.stop(), "stop after close does nothing");
  t.throws(() => poller.start(PollEvent.READABLE), { code: "EBADF", syscall: "uv_poll_start" });
});

t.test("writable and disconnect events", async (t) => {
  const [a, b] = native.socketPair();
  t.teardown(() => native.close(a));
  const events: number[] = [];
  let wake: () => void = () => {};
  const poller = new native.Poller(a, (_status, ev) => {
    events.push(ev);
    wake();
  });
  t.teardown(() => poller.close());
  let next = new Promise<void>((resolve) => {
    wake = resolve;
  });
  poller.start(PollEvent.WRITABLE);
  await next;
  t.ok((events[0]! & PollEvent.WRITABLE) !== 0, "an empty socket is writable");

  next = new Promise<void>((resolve) => {
    wake = resolve;
  });
  poller.start(PollEvent.READABLE | PollEvent.DISCONNECT);
  native.close(b);
  await next;
  t.ok((events.at(-1)! & PollEvent.DISCONNECT) !== 0, "the peer's close is a DISCONNECT");
  t.same(native.recvMsg(a, Buffer.alloc(8), 0, 8, 0), { bytes: 0, fds: [], ctrunc: false });
});

t.test("one started Poller per fd; bad fds and arguments are refused", (t) => {
  const [a, b] = pair(t);
  const first = new native.Poller(a, () => {});
  const second = new native.Poller(a, () => {});
  first.start(PollEvent.READABLE);
  t.throws(() => second.start(PollEvent.READABLE), { code: "EEXIST", syscall: "uv_poll_start" });
  first.close();
  second.start(PollEvent.READABLE);
  second.close();
  const other = new native.Poller(b, () => {});
  t.throws(() => other.start(8), { code: "ERR_OUT_OF_RANGE" });
  other.close();

  t.throws(() => new native.Poller(9999, () => {}), { code: "EBADF", syscall: "uv_poll_init" });
  const fd = native.memfdCreate("vfu-poll", 0, false);
  t.throws(() => new native.Poller(fd, () => {}), { code: "EPERM" }, "regular files cannot be polled");
  native.close(fd);
  t.throws(() => new native.Poller(a, "no" as unknown as () => void), { code: "ERR_INVALID_ARG_TYPE" });
  t.end();
});

t.test("closing the fd of a started Poller stops it first (no libuv abort on fd reuse)", async (t) => {
  const [a, b] = native.socketPair();
  let calls = 0;
  const poller = new native.Poller(a, () => {
    calls++;
  });
  poller.start(PollEvent.READABLE);
  native.close(a);
  // The fd number is likely reused by the next socket; the stopped Poller must not watch it.
  const [c, d] = native.socketPair();
  native.sendMsg(d, Buffer.from("x"), 0, 1, []);
  native.sendMsg(c, Buffer.from("x"), 0, 1, []);
  await sleep(20);
  t.equal(calls, 0);
  poller.close();
  for (const fd of [b, c, d]) native.close(fd);
});

t.test("a Poller closed and then its fd closed is safe", async (t) => {
  const [a, b] = native.socketPair();
  const poller = new native.Poller(a, () => {});
  poller.start(PollEvent.READABLE);
  poller.close();
  native.close(a);
  native.close(b);
  await sleep(5);
  t.pass("no crash");
});

t.test("1,000 Poller create/start/close cycles leak no fds", async (t) => {
  const [a] = pair(t);
  const before = openFdCount();
  for (let i = 0; i < 1000; i++) {
    const p = new native.Poller(a, () => {});
    p.start(PollEvent.READABLE | PollEvent.WRITABLE);
    p.close();
  }
  await sleep(5); // let libuv run the close callbacks
  t.equal(openFdCount(), before);
});

// A Poller callback that throws, in a child process. With `handled`, process.on('uncaughtException')
// prints what it caught; without, Node reports the error and exits 1. Either way the process must
// not abort (SIGABRT) the way a C++ exception escaping into libuv would.
function throwingPollerScript(handled: boolean): string {
  return `
const { native, PollEvent } = await import(${JSON.stringify(addonUrl)});
const [a, b] = native.socketPair();
let calls = 0;
const poller = new native.Poller(a, (status, events) => {
  calls++;
  throw new Error("boom from the poll callback (status " + status + ", events " + events + ", call " + calls + ")");
});
if (${handled}) {
  process.on("uncaughtException", (err) => {
    console.log("caught: " + err.message);
    poller.close();
    native.close(a);
    native.close(b);
    // Microtasks and later callbacks still run after the exception was handled.
    queueMicrotask(() => console.log("microtask ran"));
    setImmediate(() => console.log("loop alive"));
  });
}
poller.start(PollEvent.READABLE);
native.sendMsg(b, Buffer.from("x"), 0, 1, []);
`;
}

function runFixture(handled: boolean) {
  return spawnSync(
    process.execPath,
    ["--import", "tsx", "--input-type=module", "-e", throwingPollerScript(handled)],
    {
      cwd: repoRoot,
      encoding: "utf8",
      timeout: 20000,
    },
  );
}

t.test("an exception in the callback reaches process 'uncaughtException' (child process)", (t) => {
  const r = runFixture(true);
  t.equal(r.signal, null, "no abort");
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /caught: boom from the poll callback \(status 0, events 1, call 1\)/);
  t.match(r.stdout, /microtask ran/);
  t.match(r.stdout, /loop alive/);
  t.notMatch(r.stdout, /call 2/, "the handler closed the Poller");
  t.end();
});

t.test("an unhandled exception in the callback exits like any uncaught error (child process)", (t) => {
  const r = runFixture(false);
  t.equal(r.signal, null, "no abort");
  t.equal(r.status, 1);
  t.match(r.stderr, /boom from the poll callback/);
  t.end();
});

// Regression: Node unloads a worker's addons when it exits, and libuv then ran the Poller's close
// callback from the unloaded library (SIGSEGV in uv_run). The addon now pins itself (RTLD_NODELETE).
t.test("workers that exit with open Pollers and live mappings do not crash (child process)", (t) => {
  // The worker loads the built addon directly: TypeScript loader hooks do not reach workers here.
  const workerScript = `
const { createRequire } = await import("node:module");
const native = createRequire(${JSON.stringify(addonUrl)})("../build/Release/vfu_native.node");
const PollEvent = { READABLE: 1, WRITABLE: 2 };
const { parentPort } = await import("node:worker_threads");
const [a, b] = native.socketPair();
new native.Poller(a, () => {}).start(PollEvent.READABLE);
const closing = new native.Poller(b, () => {});
closing.start(PollEvent.WRITABLE);
closing.close(); // its close callback is still pending when the worker goes away
const fd = native.memfdCreate("vfu-worker", 4096, false);
globalThis.keep = native.mmap(fd, 4096, 0, true);
parentPort.postMessage("ready");
`;
  const script = `
const { Worker } = await import("node:worker_threads");
for (let i = 0; i < 3; i++) {
  const w = new Worker(${JSON.stringify(workerScript)}, { eval: true, execArgv: [] });
  await new Promise((resolve) => w.once("message", resolve));
  await w.terminate();
}
console.log("ok workers");
`;
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    cwd: repoRoot,
    encoding: "utf8",
    timeout: 20000,
  });
  t.equal(r.signal, null, `no crash (stderr: ${r.stderr})`);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /ok workers/);
  t.end();
});
