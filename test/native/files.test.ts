// mmap/unmap, fstat, memfd seals and eventfd counters of the native addon.
import { spawnSync } from "node:child_process";
import { closeSync, ftruncateSync, openSync, readSync, writeSync } from "node:fs";
import { fileURLToPath } from "node:url";
import t from "tap";
import { F_SEAL, MAX_MAP_LENGTH, native } from "../../native/index.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const addonUrl = new URL("../../native/index.ts", import.meta.url).href;

const PAGE = 4096;

function memfd(t: { teardown(fn: () => void): void }, size: number, seal = false): number {
  const fd = native.memfdCreate("vfu-test", size, seal);
  t.teardown(() => native.close(fd));
  return fd;
}

t.test("two mappings of one memfd share their bytes (and the file)", (t) => {
  const fd = memfd(t, 2 * PAGE);
  const whole = native.mmap(fd, 2 * PAGE, 0, true);
  const second = native.mmap(fd, PAGE, PAGE, false);
  t.teardown(() => {
    native.unmap(whole);
    native.unmap(second);
  });
  t.equal(whole.byteLength, 2 * PAGE);
  t.equal(second.byteLength, PAGE);
  const w = new Uint8Array(whole);
  const r = new Uint8Array(second);
  w[PAGE + 5] = 0xa5;
  t.equal(r[5], 0xa5, "the second mapping sees the write");
  new DataView(whole).setUint32(PAGE + 8, 0xdeadbeef, true);
  t.equal(new DataView(second).getUint32(8, true), 0xdeadbeef);
  const back = Buffer.alloc(1);
  readSync(fd, back, 0, 1, PAGE + 5);
  t.equal(back[0], 0xa5, "the file sees the write");
  writeSync(fd, Buffer.from([0x3c]), 0, 1, 7);
  t.equal(w[7], 0x3c, "the mapping sees a write to the file");
  t.end();
});

t.test("unmap detaches: stale views are empty, unmap is idempotent", (t) => {
  const fd = memfd(t, PAGE);
  const ab = native.mmap(fd, PAGE, 0, true);
  const view = new Uint8Array(ab);
  const buf = Buffer.from(ab, 16, 32);
  view[0] = 1;
  native.unmap(ab);
  t.equal(ab.byteLength, 0);
  t.equal(view.length, 0);
  t.equal(view.byteLength, 0);
  t.equal(buf.length, 0);
  t.equal(view[0], undefined, "reading a stale view is harmless");
  t.doesNotThrow(() => native.unmap(ab), "a second unmap does nothing");
  // The memory is gone, the file is not.
  const again = native.mmap(fd, PAGE, 0, false);
  t.equal(new Uint8Array(again)[0], 1);
  native.unmap(again);
  t.end();
});

t.test("unmap refuses what mmap did not make", (t) => {
  t.throws(() => native.unmap(new ArrayBuffer(16)), { code: "EINVAL", syscall: "munmap" });
  t.throws(() => native.unmap(new Uint8Array(16) as unknown as ArrayBuffer), {
    code: "ERR_INVALID_ARG_TYPE",
  });
  t.end();
});

t.test("mmap refuses what would fault or is not a file", (t) => {
  const fd = memfd(t, PAGE);
  t.throws(() => native.mmap(fd, 2 * PAGE, 0, true), {
    code: "EINVAL",
    errno: 22,
    syscall: "mmap",
    message: /file is smaller than offset\+length/,
  });
  t.throws(() => native.mmap(fd, PAGE, PAGE, true), {
    code: "EINVAL",
    message: /smaller than offset\+length/,
  });
  t.throws(() => native.mmap(fd, 0, 0, true), { code: "EINVAL", message: /length 0/ });
  t.throws(() => native.mmap(fd, MAX_MAP_LENGTH + 1, 0, true), { code: "EINVAL", message: /MAX_MAP_LENGTH/ });
  t.throws(() => native.mmap(fd, 1.5, 0, true), { code: "EINVAL" });
  t.throws(() => native.mmap(fd, 16, 100, true), { code: "EINVAL", message: /page size/ });

  const [a, b] = native.socketPair();
  const efd = native.eventfd(0);
  t.teardown(() => {
    for (const x of [a, b, efd]) native.close(x);
  });
  t.throws(() => native.mmap(a, PAGE, 0, true), { code: "EINVAL", message: /not a mappable file/ });
  t.throws(() => native.mmap(efd, PAGE, 0, true), { code: "EINVAL", message: /not a mappable file/ });
  t.throws(() => native.mmap(9999, PAGE, 0, true), { code: "EBADF", syscall: "fstat" });

  // A read-only fd cannot be mapped writable: the kernel's EACCES comes through.
  const ro = native.memfdCreate("vfu-ro", PAGE, false);
  const rofd = openSync(`/proc/self/fd/${ro}`, "r");
  native.close(ro);
  t.teardown(() => closeSync(rofd));
  t.throws(() => native.mmap(rofd, PAGE, 0, true), { code: "EACCES", syscall: "mmap" });
  const ab = native.mmap(rofd, PAGE, 0, false);
  t.equal(ab.byteLength, PAGE);
  native.unmap(ab);
  t.end();
});

t.test("a window of exactly MAX_MAP_LENGTH maps (the memfd is sparse: nothing is touched)", (t) => {
  const fd = memfd(t, MAX_MAP_LENGTH + PAGE);
  const ab = native.mmap(fd, MAX_MAP_LENGTH, PAGE, true);
  t.equal(ab.byteLength, MAX_MAP_LENGTH);
  new Uint8Array(ab)[MAX_MAP_LENGTH - 1] = 7;
  native.unmap(ab);
  t.end();
});

t.test("fstat", (t) => {
  const fd = memfd(t, 3 * PAGE);
  const st = native.fstat(fd);
  t.equal(st.size, 3 * PAGE);
  t.equal(st.isRegular, true);
  t.equal(st.mode & 0o170000, 0o100000);
  t.ok(st.blksize > 0);
  const efd = native.eventfd(0);
  t.equal(native.fstat(efd).isRegular, false);
  native.close(efd);
  t.throws(() => native.fstat(efd), { code: "EBADF", syscall: "fstat" });
  t.end();
});

t.test("sealed memfds cannot change size", (t) => {
  const sealed = memfd(t, PAGE, true);
  t.equal(native.getSeals(sealed), F_SEAL.GROW | F_SEAL.SHRINK | F_SEAL.SEAL);
  t.throws(() => ftruncateSync(sealed, 2 * PAGE), { code: "EPERM" });
  t.throws(() => ftruncateSync(sealed, 0), { code: "EPERM" });
  t.equal(native.fstat(sealed).size, PAGE);

  const unsealed = memfd(t, PAGE, false);
  t.equal(native.getSeals(unsealed), 0);
  ftruncateSync(unsealed, 2 * PAGE);
  t.equal(native.fstat(unsealed).size, 2 * PAGE);

  const [a, b] = native.socketPair();
  t.equal(native.getSeals(a), 0, "fds without sealing report 0");
  native.close(a);
  native.close(b);
  t.throws(() => native.getSeals(a), { code: "EBADF", syscall: "fcntl" });
  t.throws(() => native.memfdCreate("x".repeat(300), PAGE, true), {
    code: "EINVAL",
    syscall: "memfd_create",
  });
  t.end();
});

t.test("eventfd counters add up and read as null when zero", (t) => {
  const fd = native.eventfd(0);
  t.teardown(() => native.close(fd));
  t.equal(native.eventfdRead(fd), null);
  t.equal(native.eventfdWrite(fd, 3), true);
  t.equal(native.eventfdWrite(fd, 4), true);
  t.equal(native.eventfdRead(fd), 7);
  t.equal(native.eventfdRead(fd), null);
  t.equal(native.eventfdWrite(fd, Number.MAX_SAFE_INTEGER), true);
  t.equal(native.eventfdRead(fd), Number.MAX_SAFE_INTEGER);

  const preset = native.eventfd(5);
  t.equal(native.eventfdRead(preset), 5);
  native.close(preset);
  t.throws(() => native.eventfdWrite(fd, -1), { code: "ERR_OUT_OF_RANGE" });
  t.throws(() => native.eventfdRead(preset), { code: "EBADF", syscall: "read" });
  t.end();
});

// Run in a child with --expose-gc: mappings dropped without unmap are unmapped by the GC finalizer,
// and a finalizer that runs after unmap (its buffer detached) never unmaps a newer mapping that
// reused the address (a double munmap would crash on the reads at the end). Prints "ok ...".
const gcScript = `
const { native } = await import(${JSON.stringify(addonUrl)});
const { readFileSync } = await import("node:fs");
const NAME = "vfu-gc-" + process.pid;
const SIZE = 64 * 1024;
const mapped = () => readFileSync("/proc/self/maps", "utf8").split("\\n").filter((l) => l.includes(NAME)).length;
async function collect() {
  // Finalizers of external buffers run from an immediate after the collection.
  for (let i = 0; i < 5; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
}
const fd = native.memfdCreate(NAME, SIZE, true);

// 1. Forgotten mappings: the finalizer unmaps them.
(() => {
  const keep = [];
  for (let i = 0; i < 50; i++) keep.push(native.mmap(fd, SIZE, 0, true));
  if (mapped() < 50) throw new Error("expected 50 mappings, saw " + mapped());
})();
await collect();
if (mapped() !== 0) throw new Error("forgotten mappings were not unmapped: " + mapped() + " left");

// 2. unmap, then a new mapping (often at the same address), then the old buffer is collected.
const survivors = [];
(() => {
  for (let i = 0; i < 50; i++) {
    const old = native.mmap(fd, SIZE, 0, true);
    native.unmap(old);
    const fresh = native.mmap(fd, SIZE, 0, true);
    new Uint8Array(fresh)[i] = i;
    survivors.push(fresh);
  }
})();
await collect();
if (mapped() !== 50) throw new Error("the newer mappings must survive: " + mapped() + " of 50 left");
let sum = 0;
for (const ab of survivors) sum += new Uint8Array(ab).reduce((a, b) => a + b, 0);
survivors.forEach((ab) => native.unmap(ab));
if (mapped() !== 0) throw new Error("unmap left mappings behind");

// 3. Pollers that are never closed (started and stopped) are released by their finalizer.
const [a, b] = native.socketPair();
(() => {
  for (let i = 0; i < 20; i++) {
    const p = new native.Poller(a, () => {});
    p.start(1);
    p.stop();
  }
})();
await collect();
native.close(a);
native.close(b);
native.close(fd);
console.log("ok gc finalizers (sum " + sum + ")");
`;

t.test("the GC finalizer unmaps forgotten mappings exactly once (child process)", (t) => {
  const r = spawnSync(
    process.execPath,
    ["--expose-gc", "--import", "tsx", "--input-type=module", "-e", gcScript],
    {
      cwd: repoRoot,
      encoding: "utf8",
      timeout: 20000,
    },
  );
  t.equal(r.signal, null, `no crash (stderr: ${r.stderr})`);
  t.equal(r.status, 0, r.stderr);
  // All 50 mappings show the same page, which holds 0..49: every read sees every write.
  t.match(r.stdout, /^ok gc finalizers \(sum 61250\)$/m);
  t.end();
});
