// Socket functions of the native addon: fd passing over socketpairs, EAGAIN/EOF, listen/connect/accept.
import {
  closeSync,
  fstatSync,
  mkdtempSync,
  readdirSync,
  readSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { native } from "../../native/index.ts";

/** Open fds of this process (compare counts before and after). */
function openFdCount(): number {
  return readdirSync("/proc/self/fd").length;
}

function pair(t: { teardown(fn: () => void): void }): [number, number] {
  const [a, b] = native.socketPair();
  t.teardown(() => {
    native.close(a);
    native.close(b);
  });
  return [a, b];
}

// A memfd (file identity: dev+ino) we can compare across fd numbers.
function identity(fd: number): string {
  const st = fstatSync(fd);
  return `${st.dev}:${st.ino}`;
}

t.test("socketPair gives two non-blocking, close-on-exec ends", (t) => {
  const [a, b] = pair(t);
  t.type(a, "number");
  t.type(b, "number");
  t.not(a, b);
  // Non-blocking: an empty socket reads as EAGAIN, i.e. null, instead of hanging.
  t.equal(native.recvMsg(a, new Uint8Array(8), 0, 8, 0), null);
  t.end();
});

t.test("bytes travel without fds", (t) => {
  const [a, b] = pair(t);
  const out = Buffer.from("hello, vfio-user");
  t.equal(native.sendMsg(a, out, 0, out.length, []), out.length);
  const buf = Buffer.alloc(64);
  const r = native.recvMsg(b, buf, 4, 32, 4);
  t.same(r, { bytes: out.length, fds: [], ctrunc: false });
  t.equal(buf.subarray(4, 4 + out.length).toString(), "hello, vfio-user");
  t.end();
});

t.test("sendMsg sends only buf[offset, offset+length)", (t) => {
  const [a, b] = pair(t);
  const out = Buffer.from("xxABCDyy");
  t.equal(native.sendMsg(a, out, 2, 4, []), 4);
  const buf = Buffer.alloc(16);
  t.equal(native.recvMsg(b, buf, 0, 16, 0)?.bytes, 4);
  t.equal(buf.subarray(0, 4).toString(), "ABCD");
  t.end();
});

for (const count of [1, 3]) {
  t.test(`${count} memfd(s) ride along and refer to the same files`, (t) => {
    const [a, b] = pair(t);
    const sent = Array.from({ length: count }, (_, i) => native.memfdCreate(`vfu-test-${i}`, 4096, false));
    t.teardown(() => {
      for (const fd of sent) native.close(fd);
    });
    const header = Buffer.from([1, 2, 3, 4]);
    t.equal(native.sendMsg(a, header, 0, header.length, sent), header.length);

    const buf = Buffer.alloc(16);
    const r = native.recvMsg(b, buf, 0, 16, 8);
    t.ok(r);
    if (!r) return t.end();
    t.teardown(() => {
      for (const fd of r.fds) native.close(fd);
    });
    t.equal(r.bytes, 4);
    t.equal(r.ctrunc, false);
    t.equal(r.fds.length, count);
    t.same([...buf.subarray(0, 4)], [1, 2, 3, 4]);
    r.fds.forEach((fd, i) => {
      t.not(fd, sent[i], "a new fd number");
      t.equal(identity(fd), identity(sent[i]!), "the same open file");
      const text = Buffer.from(`written through the sender's fd #${i}`);
      writeSync(sent[i]!, text, 0, text.length, 100);
      const back = Buffer.alloc(text.length);
      t.equal(readSync(fd, back, 0, back.length, 100), text.length);
      t.equal(back.toString(), text.toString());
    });
    t.end();
  });
}

t.test("more fds than maxFds: ctrunc, no fds returned, none leaked", (t) => {
  const [a, b] = pair(t);
  const sent = [0, 1, 2].map((i) => native.memfdCreate(`vfu-trunc-${i}`, 0, false));
  t.teardown(() => {
    for (const fd of sent) native.close(fd);
  });
  for (const maxFds of [2, 0]) {
    t.equal(native.sendMsg(a, Buffer.from("x"), 0, 1, sent), 1);
    const before = openFdCount();
    const r = native.recvMsg(b, Buffer.alloc(8), 0, 8, maxFds);
    t.same(r, { bytes: 1, fds: [], ctrunc: true }, `maxFds ${maxFds}`);
    t.equal(openFdCount(), before, `maxFds ${maxFds}: every received fd was closed`);
  }
  // One fd with maxFds 0 fits the minimal control buffer but is still over the limit.
  t.equal(native.sendMsg(a, Buffer.from("y"), 0, 1, [sent[0]!]), 1);
  const before = openFdCount();
  t.same(native.recvMsg(b, Buffer.alloc(8), 0, 8, 0), { bytes: 1, fds: [], ctrunc: true });
  t.equal(openFdCount(), before);
  t.end();
});

t.test("EAGAIN: recvMsg null on an empty socket, sendMsg -1 on a full one", (t) => {
  const [a, b] = pair(t);
  t.equal(native.recvMsg(b, Buffer.alloc(8), 0, 8, 1), null);
  const chunk = Buffer.alloc(65536, 0x5a);
  let sent = 0;
  let n = 0;
  for (let i = 0; i < 10000; i++) {
    n = native.sendMsg(a, chunk, 0, chunk.length, []);
    if (n === -1) break;
    sent += n;
  }
  t.equal(n, -1, "the socket filled up");
  t.ok(sent > 0);
  // Drain it again: every byte sent arrives.
  let received = 0;
  const buf = Buffer.alloc(65536);
  for (;;) {
    const r = native.recvMsg(b, buf, 0, buf.length, 0);
    if (r === null) break;
    received += r.bytes;
  }
  t.equal(received, sent);
  t.end();
});

t.test("EOF reads as bytes 0; sending to a closed peer throws EPIPE", (t) => {
  const [a, b] = native.socketPair();
  native.close(a);
  t.same(native.recvMsg(b, Buffer.alloc(8), 0, 8, 1), { bytes: 0, fds: [], ctrunc: false });
  t.throws(() => native.sendMsg(b, Buffer.from("x"), 0, 1, []), {
    code: "EPIPE",
    errno: 32,
    syscall: "sendmsg",
    message: "sendmsg: Broken pipe",
  });
  native.close(b);
  t.end();
});

t.test("errors carry code, errno and syscall", (t) => {
  const [a, b] = native.socketPair();
  native.close(a);
  native.close(b);
  t.throws(() => native.recvMsg(a, Buffer.alloc(8), 0, 8, 0), {
    code: "EBADF",
    errno: 9,
    syscall: "recvmsg",
    message: "recvmsg: Bad file descriptor",
  });
  t.throws(() => native.close(a), { code: "EBADF", errno: 9, syscall: "close" });
  t.throws(() => native.accept(a), { code: "EBADF", syscall: "accept4" });
  t.end();
});

t.test("argument checks", (t) => {
  const [a] = pair(t);
  const buf = Buffer.alloc(8);
  t.throws(() => native.recvMsg(a, buf, 4, 8, 0), { code: "ERR_OUT_OF_RANGE" }, "past the end of buf");
  t.throws(
    () => native.recvMsg(a, buf, 0, 0, 0),
    { code: "ERR_OUT_OF_RANGE" },
    "length 0 would look like EOF",
  );
  t.throws(() => native.recvMsg(a, buf, 0, 8, 254), { code: "ERR_OUT_OF_RANGE" }, "over SCM_MAX_FD");
  t.throws(() => native.sendMsg(a, buf, -1, 1, []), { code: "ERR_OUT_OF_RANGE" });
  t.throws(() => native.sendMsg(a, buf, 0, 0, [0]), { code: "ERR_OUT_OF_RANGE" }, "fds need a byte");
  t.throws(() => native.sendMsg(a, buf, 0, 1, [-1]), { code: "ERR_INVALID_ARG_TYPE" });
  t.throws(() => native.sendMsg(a, "x" as unknown as Uint8Array, 0, 1, []), { code: "ERR_INVALID_ARG_TYPE" });
  t.throws(() => native.close(1.5), { code: "ERR_OUT_OF_RANGE" });
  t.end();
});

t.test("listen, connect, accept over a socket file with mode 0600", (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "vfu-native-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sock = path.join(dir, "dev.sock");
  const listener = native.listenUnix(sock, 4, 0o600);
  t.teardown(() => native.close(listener));
  const st = statSync(sock);
  t.ok(st.isSocket());
  t.equal(st.mode & 0o777, 0o600);

  t.equal(native.accept(listener), null, "no client yet: EAGAIN is null");
  const client = native.connectUnix(sock);
  const server = native.accept(listener);
  t.type(server, "number");
  if (server === null) return t.end();
  t.teardown(() => {
    native.close(client);
    native.close(server);
  });
  const memfd = native.memfdCreate("vfu-accept", 4096, true);
  t.equal(native.sendMsg(client, Buffer.from("ping"), 0, 4, [memfd]), 4);
  closeSync(memfd);
  const buf = Buffer.alloc(8);
  const r = native.recvMsg(server, buf, 0, 8, 1);
  t.equal(r?.bytes, 4);
  t.equal(r?.fds.length, 1);
  t.equal(native.fstat(r!.fds[0]!).size, 4096);
  native.close(r!.fds[0]!);
  t.equal(native.sendMsg(server, Buffer.from("pong"), 0, 4, []), 4);
  t.equal(native.recvMsg(client, buf, 0, 8, 0)?.bytes, 4);
  t.equal(buf.subarray(0, 4).toString(), "pong");

  t.throws(() => native.listenUnix(sock, 4, 0o600), { code: "EADDRINUSE", syscall: "bind" });
  t.throws(() => native.connectUnix(path.join(dir, "missing.sock")), { code: "ENOENT", syscall: "connect" });
  t.end();
});

t.test("a path longer than sun_path is ENAMETOOLONG", (t) => {
  const long = `/tmp/${"x".repeat(200)}.sock`;
  t.throws(() => native.listenUnix(long, 1, 0o600), { code: "ENAMETOOLONG", errno: 36, syscall: "bind" });
  t.throws(() => native.connectUnix(long), { code: "ENAMETOOLONG", syscall: "connect" });
  t.throws(() => native.listenUnix("/tmp/a\0b", 1, 0o600), { code: "ERR_INVALID_ARG_TYPE" });
  t.end();
});

t.test("dup gives a second fd for the same open file", (t) => {
  const fd = native.memfdCreate("vfu-dup", 4096, false);
  const copy = native.dup(fd);
  t.not(copy, fd);
  t.equal(identity(copy), identity(fd));
  native.close(fd);
  native.close(copy);
  t.throws(() => native.dup(fd), { code: "EBADF", syscall: "fcntl" });
  t.end();
});

t.test("peerCredentials: the pid, uid and gid at the other end (SO_PEERCRED)", (t) => {
  const [a, b] = pair(t);
  const me = { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() };
  t.same(native.peerCredentials(a), me);
  t.same(native.peerCredentials(b), me);
  const efd = native.eventfd(0);
  t.teardown(() => native.close(efd));
  t.throws(() => native.peerCredentials(efd), { code: "ENOTSOCK", syscall: "getsockopt" }, "not a socket");
  t.throws(() => native.peerCredentials(-1), { code: "ERR_OUT_OF_RANGE" });
  t.end();
});

t.test("setParentDeathSignal takes a signal number and 0 to clear", (t) => {
  t.doesNotThrow(() => native.setParentDeathSignal(0));
  t.throws(() => native.setParentDeathSignal(65), { code: "ERR_OUT_OF_RANGE" });
  t.end();
});
