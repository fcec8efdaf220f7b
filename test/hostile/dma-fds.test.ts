// Hostile DMA_MAP fds, through a real socket with real SCM_RIGHTS fds. Decisions (see
// src/iommu/dma-fd-policy.ts):
// - an fd that is not memory (socket, eventfd, directory, character device, O_PATH) is Errno.EINVAL;
// - the server maps with the rights the fd carries and never reopens it for more: a read-only fd
//   with a WRITE map, or a write-only fd, is Errno.EPERM; a read-only map of a read-only fd works, and a
//   device write into it faults instead of reaching the file;
// - an fd not sealed against shrinking (an unsealed memfd, a plain file) is Errno.EINVAL: a shrink after
//   the map would kill the server with SIGBUS, which Node cannot catch (the child-process test at
//   the end shows exactly that when the check is switched off). A sealed memfd cannot be shrunk.
// Every refused fd is closed by the server: the process's fd count returns to where it was.

import { spawnSync } from "node:child_process";
import { closeSync, ftruncateSync, openSync, writeFileSync } from "node:fs";
import path from "node:path";
import t from "tap";
import { native } from "../../native/index.ts";
import { Errno } from "../../protocol/index.ts";
import { Command, encodeDmaMap } from "../../src/index.ts";
import { openFdCount } from "../../src/util/fds.ts";
import { dmaStatus, errnoOf, RawClient, RW, startDma, startServer } from "./helpers.ts";

const READ = 0x1;
const PAGE = 4096;
const SIZE = 0x10000;

function mapBody(iova: bigint, flags = RW, size = SIZE): Uint8Array {
  return encodeDmaMap({ argsz: 32, flags, offset: 0n, addr: iova, size: BigInt(size) });
}

t.test("DMA_MAP with fds that are not memory is EINVAL and the fds are closed", async (t) => {
  const s = startServer();
  t.teardown(() => s.close());
  const c = await RawClient.connect(s.path());
  const before = openFdCount();
  const [sockA, sockB] = native.socketPair();
  const cases: [string, number][] = [
    ["a socket", sockA],
    ["an eventfd", native.eventfd(0)],
    ["a directory", openSync(s.dir, "r")],
    ["/dev/null", openSync("/dev/null", "r+")],
    ["an O_PATH fd", openSync(path.join(s.dir, "dev0.sock"), 0o10000000)],
  ];
  let iova = 0x100000n;
  for (const [what, fd] of cases) {
    const r = await c.request(Command.DMA_MAP, mapBody(iova), [fd]);
    t.equal(errnoOf(r), Errno.EINVAL, `${what}: EINVAL`);
    iova += 0x100000n;
  }
  for (const [, fd] of cases) closeSync(fd);
  closeSync(sockB);
  const probe = await c.request(
    Command.DEVICE_GET_INFO,
    new Uint8Array([16, 0, 0, 0, ...new Uint8Array(12)]),
  );
  t.equal(errnoOf(probe), 0, "the session goes on");
  t.equal(openFdCount(), before, "the server closed every refused fd");
  t.match(s.sink.text(), /not mappable memory/, "the reason is logged");
  c.close();
});

t.test("read-only and write-only fds: the server gains no right the client did not give", async (t) => {
  const s = startServer();
  t.teardown(() => s.close());
  const start = openFdCount();
  const c = await RawClient.connect(s.path());
  const memfd = native.memfdCreate("hostile-ro", SIZE, true);
  const mine = new Uint8Array(native.mmap(memfd, SIZE, 0, true));
  mine.fill(0x11);
  const ro = openSync(`/proc/self/fd/${memfd}`, "r");
  const wo = openSync(`/proc/self/fd/${memfd}`, 1 /* O_WRONLY */);

  t.equal(
    errnoOf(await c.request(Command.DMA_MAP, mapBody(0x100000n), [ro])),
    Errno.EPERM,
    "read-only fd, WRITE map: EPERM",
  );
  t.equal(
    errnoOf(await c.request(Command.DMA_MAP, mapBody(0x100000n, READ), [wo])),
    Errno.EPERM,
    "write-only fd: EPERM",
  );
  t.equal(
    errnoOf(await c.request(Command.DMA_MAP, mapBody(0x100000n, READ), [ro])),
    0,
    "read-only fd, READ map: fine",
  );

  // The device may read the memory...
  let raised = await startDma(c, 0x100000n, 256, 1);
  t.equal(await dmaStatus(c, raised), 2, "a device read from the read-only map works");
  // ...but its writes fault: nothing reaches the file.
  raised = await startDma(c, 0x100000n, 256, 2);
  t.equal(await dmaStatus(c, raised), 3, "a device write into the read-only map faults");
  t.ok(
    mine.subarray(0, 256).every((b) => b === 0x11),
    "the file is unchanged",
  );

  c.close();
  await waitForSessionEnd(s);
  closeSync(ro);
  closeSync(wo);
  native.unmap(mine.buffer as ArrayBuffer);
  native.close(memfd);
  t.equal(openFdCount(), start, "the server released the map's fd and the refused ones");
});

t.test("fds that could shrink under the server are refused; a sealed memfd cannot shrink", async (t) => {
  const s = startServer();
  t.teardown(() => s.close());
  const start = openFdCount();
  const c = await RawClient.connect(s.path());
  const unsealed = native.memfdCreate("hostile-unsealed", SIZE, false);
  const file = path.join(s.dir, "ram");
  writeFileSync(file, new Uint8Array(SIZE));
  const plain = openSync(file, "r+");
  const sealed = native.memfdCreate("hostile-sealed", SIZE, true);

  t.equal(
    errnoOf(await c.request(Command.DMA_MAP, mapBody(0x100000n), [unsealed])),
    Errno.EINVAL,
    "unsealed memfd",
  );
  t.equal(errnoOf(await c.request(Command.DMA_MAP, mapBody(0x100000n), [plain])), Errno.EINVAL, "plain file");
  t.match(s.sink.text(), /F_SEAL_SHRINK/, "the log says why");
  t.equal(errnoOf(await c.request(Command.DMA_MAP, mapBody(0x100000n), [sealed])), 0, "sealed memfd");
  t.throws(() => ftruncateSync(sealed, PAGE), { code: "EPERM" }, "the client cannot shrink it");
  t.throws(() => ftruncateSync(sealed, 0), { code: "EPERM" });
  const raised = await startDma(c, 0x100000n, SIZE, 2);
  t.equal(await dmaStatus(c, raised), 2, "the device writes all of it");

  c.close();
  await waitForSessionEnd(s);
  for (const fd of [unsealed, plain, sealed]) closeSync(fd);
  t.equal(openFdCount(), start, "refused and released fds are all closed");
});

t.test("without the seal check a shrunk memfd kills the server with SIGBUS (why the check exists)", (t) => {
  const child = path.join(import.meta.dirname, "fixtures", "sigbus-child.ts");
  const run = (mode: string) =>
    spawnSync(process.execPath, ["--import", "tsx", child, mode], { encoding: "utf8", timeout: 60_000 });
  const guarded = run("default");
  t.equal(guarded.status, 0, `default policy: the child survives (${guarded.stderr.trim()})`);
  t.match(guarded.stdout, /map refused: 22/, "the unsealed map is refused with EINVAL");
  const unguarded = run("allow-unsealed");
  t.equal(
    unguarded.signal,
    "SIGBUS",
    "allowUnsealedDmaFds: the shrink brings SIGBUS, which no handler catches",
  );
  t.match(unguarded.stdout, /mapped/, "the map was accepted before the shrink");
  t.end();
});

async function waitForSessionEnd(s: ReturnType<typeof startServer>): Promise<void> {
  const session = s.endpoints[0]!.session;
  if (session) await session.ended;
}
