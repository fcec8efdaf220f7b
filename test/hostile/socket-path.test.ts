// The socket file: created 0600 unless configured; a stale socket of ours is replaced; anything
// else at the path (a file, a directory, a symlink, a live socket, another user's socket) is never
// removed and the error says why; closing removes only the socket we created.
import {
  chownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { native } from "../../native/index.ts";
import { Server } from "../../src/index.ts";
import { factory, RawClient, waitFor } from "./helpers.ts";

function dir(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(path.join(tmpdir(), "vfu-sock-"));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Leave a socket file that nothing listens on (a server that died without cleaning up). */
function staleSocket(p: string): void {
  native.close(native.listenUnix(p, 1, 0o600));
}

t.test("the socket file is 0600 by default and takes a configured mode", async (t) => {
  const d = dir(t);
  const server = new Server();
  t.teardown(() => server.close());
  const a = server.listen(factory(), { socketPath: path.join(d, "a.sock") });
  const b = server.listen(factory(), { socketPath: path.join(d, "b.sock"), mode: 0o660 });
  t.equal(lstatSync(a.socketPath).mode & 0o7777, 0o600);
  t.equal(lstatSync(b.socketPath).mode & 0o7777, 0o660);
  t.ok(lstatSync(a.socketPath).isSocket());
});

t.test("a stale socket of ours is replaced", async (t) => {
  const d = dir(t);
  const p = path.join(d, "dev.sock");
  staleSocket(p);
  t.ok(lstatSync(p).isSocket(), "a stale socket is there");
  const server = new Server();
  t.teardown(() => server.close());
  server.listen(factory(), { socketPath: p });
  const c = await RawClient.connect(p);
  t.equal(await c.read32(0, 0), 0x56465531, "the new server answers on it");
  c.close();
});

t.test("anything else at the path is left alone, with an error naming it", async (t) => {
  const d = dir(t);
  const server = new Server();
  t.teardown(() => server.close());

  const file = path.join(d, "file");
  writeFileSync(file, "precious");
  t.throws(() => server.listen(factory(), { socketPath: file }), /exists and is not a socket/);
  t.equal(readFileSync(file, "utf8"), "precious", "a regular file is untouched");

  const sub = path.join(d, "dir");
  mkdirSync(sub);
  t.throws(() => server.listen(factory(), { socketPath: sub }), /not a socket/);
  t.ok(lstatSync(sub).isDirectory(), "a directory is untouched");

  const target = path.join(d, "target.sock");
  staleSocket(target);
  const link = path.join(d, "link.sock");
  symlinkSync(target, link);
  t.throws(() => server.listen(factory(), { socketPath: link }), /not a socket/);
  t.ok(lstatSync(link).isSymbolicLink(), "a symlink is untouched, even to a stale socket");
  t.ok(lstatSync(target).isSocket(), "and so is its target");

  const live = path.join(d, "live.sock");
  const ep = server.listen(factory(), { socketPath: live });
  t.throws(() => server.listen(factory(), { socketPath: live }), /in use/);
  // The probe that found it live was a connection like any other: let its session end.
  await waitFor(() => ep.sessionsServed === 1 && ep.session === null, 5000, "the probe's session to end");
  const c = await RawClient.connect(live);
  t.equal(await c.read32(0, 0), 0x56465531, "the live server keeps serving");
  c.close();
});

t.test(
  "a stale socket of another user is not removed",
  { skip: process.getuid?.() !== 0 && "needs root to chown" },
  async (t) => {
    const d = dir(t);
    const p = path.join(d, "theirs.sock");
    staleSocket(p);
    chownSync(p, 65534, 65534);
    const server = new Server();
    t.teardown(() => server.close());
    t.throws(() => server.listen(factory(), { socketPath: p }), /not ours/);
    t.equal(lstatSync(p).uid, 65534, "their socket is still there");
  },
);

t.test("closing removes only the socket we created", async (t) => {
  const d = dir(t);
  const p = path.join(d, "dev.sock");
  const server = new Server();
  server.listen(factory(), { socketPath: p });
  // Someone replaces the path while we run.
  unlinkSync(p);
  writeFileSync(p, "not yours");
  await server.close();
  t.equal(readFileSync(p, "utf8"), "not yours", "the replacement survives our close");

  const q = path.join(d, "own.sock");
  const again = new Server();
  again.listen(factory(), { socketPath: q });
  await again.close();
  t.throws(() => lstatSync(q), { code: "ENOENT" }, "our own socket is removed");
});
