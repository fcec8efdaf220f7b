// Namespace 1: a raw image file (node:fs), LBA size 512 or 4096 bytes, no metadata.
//
// Durability: every write goes to the file with pwrite before its command completes, so data a
// guest saw completed survives this process dying (it is in the kernel's page cache); a Flush
// (and a controller shutdown, and dispose) calls fdatasync, so data completed before a completed
// Flush survives a host crash too. Deallocate and Write Zeroes write zeros (node:fs has no hole
// punching), which matches DLFEAT "deallocated blocks read as zeros".
//
// Synchronous I/O: a Read or Write of at most SYNC_IO_MAX_BYTES runs on the event loop
// (readvSync/writevSync) instead of on the libuv pool, while such transfers stay fast (see the
// constants below for the limits and why).
//
// OWNERSHIP: the namespace opens the file and closes it in `close()`.
import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  fstatSync,
  ftruncateSync,
  openSync,
  read,
  readv,
  readvSync,
  write,
  writev,
  writevSync,
} from "node:fs";

// Synchronous file I/O, in one place. A 4 KiB pread from the page cache costs about 4 µs on the
// event loop, 128 KiB about 28 µs; the same read on the libuv pool is a hand-off to a pool thread
// and back (a futex wake, an eventfd write, an epoll wake of the main thread): 20-40 µs of wall
// time on an idle host and 250-350 µs per 4 KiB command in the guest benchmark on 2 loaded cores,
// plus the CPU of two thread wake-ups that the TCG vCPU then lacks. So small transfers run
// synchronously, within three bounds that keep the event loop (every other device and session
// of the process) from being held long:
/** Largest transfer done synchronously: 128 KiB, this controller's MDTS, copied in about 28 µs
 * from the page cache. A larger one goes to the pool. */
export const SYNC_IO_MAX_BYTES = 128 * 1024;
/** Synchronous I/O per pump pass (one event-loop turn): once a pass has spent this much, its
 * remaining commands go to the pool, so a deep queue of large transfers cannot hold the loop. */
export const SYNC_IO_PASS_BUDGET_MS = 1;
/** A synchronous transfer slower than this was not served from the page cache (a disk read, or
 * a write held by dirty-page throttling): synchronous I/O then stays off for
 * SYNC_IO_BACKOFF_MS, so the loop is held that long at most once per back-off period. */
export const SYNC_IO_SLOW_MS = 2;
export const SYNC_IO_BACKOFF_MS = 250;

function pread(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) =>
    read(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))),
  );
}

function pwrite(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) =>
    write(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))),
  );
}

function preadv(fd: number, bufs: Uint8Array[], pos: number): Promise<number> {
  return new Promise((resolve, reject) => readv(fd, bufs, pos, (e, n) => (e ? reject(e) : resolve(n))));
}

function pwritev(fd: number, bufs: Uint8Array[], pos: number): Promise<number> {
  return new Promise((resolve, reject) => writev(fd, bufs, pos, (e, n) => (e ? reject(e) : resolve(n))));
}

/** The buffers after the first `skip` bytes (a short transfer goes on from there). */
function after(bufs: Uint8Array[], skip: number): Uint8Array[] {
  if (skip === 0) return bufs;
  const out: Uint8Array[] = [];
  for (const b of bufs) {
    if (skip >= b.length) skip -= b.length;
    else {
      out.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
  }
  return out;
}

export interface NamespaceOptions {
  path: string;
  /** Bytes; the file is created or extended to this size when it is smaller. 0: keep its size. */
  size: number;
  lbaSize: 512 | 4096;
  /** Times synchronous transfers (the device's clock; default performance.now). */
  clock?: { now(): number };
}

export interface NamespaceStats {
  readCommands: number;
  writeCommands: number;
  bytesRead: number;
  bytesWritten: number;
  /** Reads and writes done synchronously (the rest went to the libuv pool). */
  syncTransfers: number;
  /** Synchronous transfers slower than SYNC_IO_SLOW_MS (each turned sync I/O off for a while). */
  slowSyncTransfers: number;
}

const ZERO_CHUNK = new Uint8Array(1 << 20);

export class Namespace {
  readonly path: string;
  readonly lbaSize: number;
  readonly lbaShift: number;
  /** Size in logical blocks. */
  readonly blocks: bigint;
  readonly stats: NamespaceStats = {
    readCommands: 0,
    writeCommands: 0,
    bytesRead: 0,
    bytesWritten: 0,
    syncTransfers: 0,
    slowSyncTransfers: 0,
  };
  /** Synchronous I/O allowed (the option `syncio`): for reads and writes, reads only, or none. */
  syncIo: "on" | "reads" | "off" = "on";
  #fd: number;
  #passSpentMs = 0;
  #syncOffUntil = 0;
  readonly #clock: { now(): number };

  constructor(o: NamespaceOptions) {
    this.#clock = o.clock ?? performance;
    this.path = o.path;
    this.lbaSize = o.lbaSize;
    this.lbaShift = o.lbaSize === 4096 ? 12 : 9;
    this.#fd = openSync(o.path, "a+");
    closeSync(this.#fd);
    this.#fd = openSync(o.path, "r+");
    let size = fstatSync(this.#fd).size;
    if (size < o.size) {
      ftruncateSync(this.#fd, o.size);
      size = o.size;
    }
    this.blocks = BigInt(Math.floor(size / o.lbaSize));
    if (this.blocks === 0n) {
      closeSync(this.#fd);
      throw new Error(`nvme: ${o.path} is smaller than one ${o.lbaSize}-byte block (give --set size=)`);
    }
  }

  get open(): boolean {
    return this.#fd >= 0;
  }

  /** True when [slba, slba + nlb) lies inside the namespace. */
  inRange(slba: bigint, nlb: number): boolean {
    return slba >= 0n && slba + BigInt(nlb) <= this.blocks;
  }

  async read(slba: bigint, into: Uint8Array): Promise<void> {
    let done = 0;
    const pos = Number(slba) * this.lbaSize;
    while (done < into.length) {
      const bytesRead = await pread(this.#live(), into, done, into.length - done, pos + done);
      if (bytesRead === 0) {
        into.fill(0, done);
        break;
      }
      done += bytesRead;
    }
    this.stats.readCommands++;
    this.stats.bytesRead += into.length;
  }

  async write(slba: bigint, data: Uint8Array): Promise<void> {
    let done = 0;
    const pos = Number(slba) * this.lbaSize;
    while (done < data.length) {
      const bytesWritten = await pwrite(this.#live(), data, done, data.length - done, pos + done);
      done += bytesWritten;
    }
    this.stats.writeCommands++;
    this.stats.bytesWritten += data.length;
  }

  /** Read into the buffers in order (`length` bytes in all): preadv straight into guest pages. */
  async readv(slba: bigint, bufs: Uint8Array[], length: number): Promise<void> {
    if (bufs.length === 1) return this.read(slba, bufs[0]!);
    let done = 0;
    const pos = Number(slba) * this.lbaSize;
    while (done < length) {
      const n = await preadv(this.#live(), after(bufs, done), pos + done);
      if (n === 0) {
        for (const b of after(bufs, done)) b.fill(0);
        break;
      }
      done += n;
    }
    this.stats.readCommands++;
    this.stats.bytesRead += length;
  }

  /** Write the buffers in order (`length` bytes in all): pwritev straight from guest pages. */
  async writev(slba: bigint, bufs: Uint8Array[], length: number): Promise<void> {
    if (bufs.length === 1) return this.write(slba, bufs[0]!);
    let done = 0;
    const pos = Number(slba) * this.lbaSize;
    while (done < length) done += await pwritev(this.#live(), after(bufs, done), pos + done);
    this.stats.writeCommands++;
    this.stats.bytesWritten += length;
  }

  /** A new pump pass begins: its synchronous I/O budget starts again. */
  beginPass(): void {
    this.#passSpentMs = 0;
  }

  /** Whether a transfer of `length` bytes may run synchronously now. */
  syncAllowed(length: number, write = false): boolean {
    return (
      (this.syncIo === "on" || (this.syncIo === "reads" && !write)) &&
      length <= SYNC_IO_MAX_BYTES &&
      this.#passSpentMs < SYNC_IO_PASS_BUDGET_MS &&
      (this.#syncOffUntil === 0 || this.#clock.now() >= this.#syncOffUntil)
    );
  }

  /** Account a synchronous transfer that took `ms` (transferSync calls this; tests too): it
   * counts against the pass budget, and a slow one starts the back-off. */
  noteSyncTime(ms: number): void {
    this.#passSpentMs += ms;
    if (ms > SYNC_IO_SLOW_MS) {
      this.stats.slowSyncTransfers++;
      this.#syncOffUntil = this.#clock.now() + SYNC_IO_BACKOFF_MS;
    }
  }

  /** readv/writev on the event loop (the caller checked syncAllowed). Throws the fs error. */
  transferSync(write: boolean, slba: bigint, bufs: Uint8Array[], length: number): void {
    const fd = this.#live();
    const pos = Number(slba) * this.lbaSize;
    const t0 = this.#clock.now();
    try {
      let done = 0;
      while (done < length) {
        const rest = after(bufs, done);
        const n = write ? writevSync(fd, rest, pos + done) : readvSync(fd, rest, pos + done);
        if (n === 0 && !write) {
          for (const b of rest) b.fill(0);
          break;
        }
        done += n;
      }
    } finally {
      this.stats.syncTransfers++;
      this.noteSyncTime(this.#clock.now() - t0);
    }
    if (write) {
      this.stats.writeCommands++;
      this.stats.bytesWritten += length;
    } else {
      this.stats.readCommands++;
      this.stats.bytesRead += length;
    }
  }

  async writeZeroes(slba: bigint, nlb: number): Promise<void> {
    let left = nlb * this.lbaSize;
    let pos = Number(slba) * this.lbaSize;
    while (left > 0) {
      const n = Math.min(left, ZERO_CHUNK.length);
      await pwrite(this.#live(), ZERO_CHUNK, 0, n, pos);
      pos += n;
      left -= n;
    }
  }

  /** fdatasync: everything written so far is durable when this resolves. */
  async flush(): Promise<void> {
    const fd = this.#live();
    await new Promise<void>((resolve, reject) => fdatasync(fd, (e) => (e ? reject(e) : resolve())));
  }

  /** Synchronous flush (shutdown from a handler that may not await, dispose). */
  flushSync(): void {
    if (this.#fd >= 0) fdatasyncSync(this.#fd);
  }

  /** Flush and close. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    this.flushSync();
    closeSync(this.#fd);
    this.#fd = -1;
  }

  #live(): number {
    if (this.#fd < 0) throw new Error("nvme: the namespace file is closed");
    return this.#fd;
  }
}
