// An in-process connection pair for tests and fuzzing: what one end sends, the other receives,
// through the same framing code as a real socket (StreamReader), with no syscalls for the bytes.
// Fds are duplicated on send, as SCM_RIGHTS would, so each side owns its own copies.
//
// Delivery modes:
// - automatic (default): bytes reach the peer in a microtask, optionally cut into chunks by
//   `chunking` to exercise the framer;
// - manual (`manual: true`): nothing moves until `deliver()` is called on the receiving end; a
//   single-step harness uses it to drive a session one message at a time with no sleeps.

import { native } from "../../native/index.ts";
import { closeFds } from "../util/fds.ts";
import type { Connection, ConnectionHandlers, ConnectionOptions } from "./connection.ts";
import { StreamReader } from "./stream-reader.ts";

export interface MemoryPairOptions extends Partial<ConnectionOptions> {
  manual?: boolean;
  /** Cut every message into chunks of these sizes (cycled) on the way to the peer. */
  chunking?: readonly number[];
}

interface Chunk {
  bytes: Uint8Array;
  fds: number[];
  truncated: boolean;
}

export class MemoryConnection implements Connection {
  readonly name: string;
  peer!: MemoryConnection;
  readonly #reader: StreamReader;
  readonly #opts: ConnectionOptions & MemoryPairOptions;
  // A queue with a moving head: `shift()` on a large array is O(n), and a 1 MiB message cut into
  // 1-byte chunks (the fuzzer does that) made delivery quadratic: minutes for one message.
  #inbox: Chunk[] = [];
  #inboxHead = 0;
  #handlers: ConnectionHandlers | null = null;
  #closed = false;
  #paused = false;
  #scheduled = false;
  #chunkIndex = 0;

  constructor(name: string, opts: ConnectionOptions & MemoryPairOptions) {
    this.name = name;
    this.#opts = opts;
    this.#reader = new StreamReader(opts.maxMessageSize);
  }

  setHandlers(handlers: ConnectionHandlers): void {
    this.#handlers = handlers;
    this.#schedule();
  }

  get closed(): boolean {
    return this.#closed;
  }

  get queuedBytes(): number {
    return 0;
  }

  /** Chunks waiting in this end's inbox (manual mode). */
  get pending(): number {
    return this.#inbox.length - this.#inboxHead;
  }

  send(message: Uint8Array, fds: readonly number[] = []): void {
    if (this.#closed || this.peer.#closed) return;
    this.peer.#receive(message, fds);
  }

  #receive(message: Uint8Array, fds: readonly number[]): void {
    const copies: number[] = [];
    for (const fd of fds) copies.push(native.dup(fd));
    let truncated = false;
    if (copies.length > this.#opts.maxRecvFds) {
      closeFds(copies);
      copies.length = 0;
      truncated = true;
    }
    const bytes = message.slice();
    const sizes = this.#opts.chunking;
    if (!sizes || sizes.length === 0) {
      this.#inbox.push({ bytes, fds: copies, truncated });
    } else {
      let off = 0;
      let first = true;
      while (off < bytes.length) {
        const size = Math.max(1, sizes[this.#chunkIndex++ % sizes.length]!);
        const end = Math.min(bytes.length, off + size);
        // A real socket hands fds to the last byte of the segment that carried them; here that is
        // the first chunk of the message.
        this.#inbox.push({
          bytes: bytes.subarray(off, end),
          fds: first ? copies : [],
          truncated: first && truncated,
        });
        first = false;
        off = end;
      }
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#opts.manual || this.#scheduled || this.#closed || !this.#handlers) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.deliver();
    });
  }

  /** Push every inbox chunk into the framer and hand out complete frames. Returns the number of
   * frames delivered. In manual mode, `limit` delivers at most that many frames. */
  deliver(limit = Number.POSITIVE_INFINITY): number {
    let delivered = 0;
    while (!this.#closed && !this.#paused && delivered < limit) {
      const frame = this.#reader.take(this.#handlers, (err) => this.close(err));
      if (this.#closed) break;
      if (frame) {
        delivered++;
        this.#handlers?.onFrame(frame);
        continue;
      }
      const chunk = this.#inbox[this.#inboxHead];
      if (!chunk) break;
      this.#inbox[this.#inboxHead++] = undefined as unknown as Chunk;
      if (this.#inboxHead === this.#inbox.length) {
        this.#inbox = [];
        this.#inboxHead = 0;
      }
      this.#reader.push(chunk.bytes, chunk.fds, chunk.truncated);
    }
    // Everything that was in the inbox is one batch (what one read of a socket would have taken).
    if (delivered > 0 && !this.#closed) this.#handlers?.onBatchEnd?.();
    return delivered;
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#schedule();
  }

  close(err: Error | null = null): void {
    if (this.#closed) return;
    this.#closed = true;
    for (let i = this.#inboxHead; i < this.#inbox.length; i++) closeFds(this.#inbox[i]!.fds);
    this.#inbox = [];
    this.#inboxHead = 0;
    this.#reader.dispose();
    this.#handlers?.onClose(err);
    // The peer sees EOF.
    const peer = this.peer;
    if (peer && !peer.#closed) queueMicrotask(() => peer.#eof());
  }

  #eof(): void {
    // Frames already in the inbox are delivered before the EOF, as a socket would.
    if (!this.#opts.manual) this.deliver();
    this.close(null);
  }
}

const DEFAULTS: ConnectionOptions = {
  maxMessageSize: 1024 * 1024 + 64,
  maxRecvFds: 8,
  maxQueuedBytes: 16 * 1024 * 1024,
};

/** Two connected ends: `[client, server]` by convention. */
export function createMemoryPair(
  a: MemoryPairOptions = {},
  b: MemoryPairOptions = a,
): [MemoryConnection, MemoryConnection] {
  const left = new MemoryConnection(a.name ?? "memory-a", { ...DEFAULTS, ...a });
  const right = new MemoryConnection(b.name ?? "memory-b", { ...DEFAULTS, ...b });
  left.peer = right;
  right.peer = left;
  return [left, right];
}
