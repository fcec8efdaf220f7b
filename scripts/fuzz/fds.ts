// The fds the fuzzer attaches to messages: memory the server may map (sealed memfds of fitting
// sizes) and everything it must refuse or merely close (unsealed or odd-sized memfds, eventfds,
// sockets, a socket whose peer is gone, a directory, /dev/null, a read-only file, a read-only
// reopening of a memfd). The kinds are plain data so a finding can record what was sent.
//
// A fd number that is already closed cannot travel at all (sendmsg fails with EBADF before
// anything reaches the server), so "closed" here means the sender's own copy is closed right
// after the message went: the server then holds the last reference.
//
// OWNERSHIP: `FdFactory.make` returns fds owned by the factory; `release()` closes all of them.

import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { native } from "../../native/index.ts";
import type { Rng } from "./rng.ts";

export type FdKind =
  | { kind: "memfd"; size: number; sealed: boolean }
  | { kind: "memfd-readonly"; size: number }
  | { kind: "eventfd" }
  | { kind: "socket" }
  | { kind: "socket-peer-closed" }
  | { kind: "directory" }
  | { kind: "dev-null" }
  | { kind: "readonly-file" };

/** Sizes that are not what anyone would map: empty, one byte, a page minus or plus one... */
const ODD_SIZES = [0, 1, 4095, 4097, 12289, 65535];

export function randomFdKind(rng: Rng, wantSize?: number): FdKind {
  return rng.weighted<() => FdKind>([
    [30, () => ({ kind: "memfd", size: wantSize ?? rng.pick([4096, 8192, 65536]), sealed: true })],
    [8, () => ({ kind: "memfd", size: wantSize ?? 4096, sealed: false })],
    [8, () => ({ kind: "memfd", size: rng.pick(ODD_SIZES), sealed: rng.chance(0.5) })],
    [4, () => ({ kind: "memfd-readonly", size: wantSize ?? 4096 })],
    [14, () => ({ kind: "eventfd" })],
    [5, () => ({ kind: "socket" })],
    [3, () => ({ kind: "socket-peer-closed" })],
    [3, () => ({ kind: "directory" })],
    [3, () => ({ kind: "dev-null" })],
    [3, () => ({ kind: "readonly-file" })],
  ])();
}

export function describeFdKind(k: FdKind): string {
  if (k.kind === "memfd") return `memfd(${k.size}${k.sealed ? ",sealed" : ""})`;
  if (k.kind === "memfd-readonly") return `memfd-readonly(${k.size})`;
  return k.kind;
}

export class FdFactory {
  readonly #dir: string;
  readonly #roFile: string;
  #open: number[] = [];

  constructor() {
    this.#dir = mkdtempSync(join(tmpdir(), "vfu-fuzz-fds-"));
    this.#roFile = join(this.#dir, "readonly");
    writeFileSync(this.#roFile, new Uint8Array(65536));
  }

  /** Creates one fd of the given kind. OWNERSHIP: stays the factory's until `release()`. */
  make(k: FdKind): number {
    const fd = this.#create(k);
    this.#open.push(fd);
    return fd;
  }

  #create(k: FdKind): number {
    switch (k.kind) {
      case "memfd":
        return native.memfdCreate("vfu-fuzz", k.size, k.sealed);
      case "memfd-readonly": {
        const rw = native.memfdCreate("vfu-fuzz-ro", k.size, true);
        try {
          return openSync(`/proc/self/fd/${rw}`, "r");
        } finally {
          native.close(rw);
        }
      }
      case "eventfd":
        return native.eventfd(0);
      case "socket": {
        const [a, b] = native.socketPair();
        this.#open.push(b);
        return a;
      }
      case "socket-peer-closed": {
        const [a, b] = native.socketPair();
        native.close(b);
        return a;
      }
      case "directory":
        return openSync(this.#dir, "r");
      case "dev-null":
        return openSync("/dev/null", "r+");
      case "readonly-file":
        return openSync(this.#roFile, "r");
    }
  }

  /** Fds created and not yet released. */
  get count(): number {
    return this.#open.length;
  }

  /** Close every fd made so far. */
  release(): void {
    for (const fd of this.#open) {
      try {
        closeSync(fd);
      } catch {
        // closed already (a test closed it early on purpose)
      }
    }
    this.#open = [];
  }

  dispose(): void {
    this.release();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
