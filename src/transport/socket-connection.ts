// A vfio-user connection over a real UNIX stream socket. The native addon owns the socket fd and
// reports readiness through a uv_poll watcher on Node's loop; this class reads with recvmsg
// (collecting SCM_RIGHTS fds, see StreamReader for how they are attributed to messages) and writes
// with sendmsg, keeping a bounded queue when the kernel buffer is full.
//
// OWNERSHIP: the socket fd is this object's from construction and is closed by `close()`.

import { native, PollEvent, type PollerInstance } from "../../native/index.ts";
import { closeFds } from "../util/fds.ts";
import {
  type Connection,
  type ConnectionHandlers,
  type ConnectionOptions,
  type PeerCredentials,
  PeerNotReadingError,
} from "./connection.ts";
import { StreamReader } from "./stream-reader.ts";

interface PendingWrite {
  bytes: Uint8Array;
  offset: number;
  fds: readonly number[];
}

/** Largest buffer a backlog of small queued messages is merged into for one sendmsg. */
const COALESCE_BYTES = 256 * 1024;

/** Reused by every connection: a recvmsg copies out of it into the framer at once. */
let sharedReadBuffer: Uint8Array | null = null;

export class SocketConnection implements Connection {
  readonly name: string;
  readonly #fd: number;
  readonly #poller: PollerInstance;
  readonly #reader: StreamReader;
  readonly #opts: ConnectionOptions;
  readonly #writes: PendingWrite[] = [];
  #queuedBytes = 0;
  #handlers: ConnectionHandlers | null = null;
  #closed = false;
  #paused = false;
  #watching = 0;
  #delivering = false;

  constructor(fd: number, opts: ConnectionOptions & { readBufferSize?: number }) {
    this.#fd = fd;
    this.#opts = opts;
    this.name = opts.name ?? `fd ${fd}`;
    this.#reader = new StreamReader(opts.maxMessageSize);
    if (!sharedReadBuffer || sharedReadBuffer.length < (opts.readBufferSize ?? 256 * 1024)) {
      sharedReadBuffer = new Uint8Array(opts.readBufferSize ?? 256 * 1024);
    }
    this.#poller = new native.Poller(fd, (status, events) => this.#onPoll(status, events));
  }

  setHandlers(handlers: ConnectionHandlers): void {
    this.#handlers = handlers;
    this.#updateWatch();
  }

  get closed(): boolean {
    return this.#closed;
  }

  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  send(message: Uint8Array, fds: readonly number[] = []): void {
    if (this.#closed) return;
    if (this.#writes.length === 0) {
      const sent = this.#trySend(message, 0, fds);
      if (sent === message.length || this.#closed) return;
      this.#enqueue({ bytes: message, offset: sent, fds: sent > 0 ? [] : fds });
    } else {
      this.#enqueue({ bytes: message, offset: 0, fds });
    }
  }

  peerCredentials(): PeerCredentials | null {
    if (this.#closed) return null;
    try {
      return native.peerCredentials(this.#fd);
    } catch {
      return null; // the kernel cannot say (the socket is already reset)
    }
  }

  pause(): void {
    this.#paused = true;
    this.#updateWatch();
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#updateWatch();
    // Frames already framed but held back while paused are delivered now.
    if (!this.#closed) this.#deliver();
  }

  close(err: Error | null = null): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#poller.close();
    this.#writes.length = 0;
    this.#queuedBytes = 0;
    this.#reader.dispose();
    try {
      native.close(this.#fd);
    } catch {
      // the fd is ours; a failure to close it leaves nothing for us to do
    }
    this.#handlers?.onClose(err);
  }

  #enqueue(w: PendingWrite): void {
    this.#writes.push(w);
    this.#queuedBytes += w.bytes.length - w.offset;
    if (this.#queuedBytes > this.#opts.maxQueuedBytes) {
      this.close(
        new PeerNotReadingError(`${this.#queuedBytes} bytes queued (limit ${this.#opts.maxQueuedBytes})`),
      );
      return;
    }
    this.#updateWatch();
  }

  /** Returns the bytes written (0 on EAGAIN); closes the connection on a hard error. */
  #trySend(bytes: Uint8Array, offset: number, fds: readonly number[]): number {
    try {
      const n = native.sendMsg(this.#fd, bytes, offset, bytes.length - offset, fds as number[]);
      return Math.max(n, 0);
    } catch (err) {
      this.close(err as Error);
      return 0;
    }
  }

  #flushWrites(): void {
    while (this.#writes.length > 0 && !this.#closed) {
      this.#coalesce();
      const w = this.#writes[0]!;
      const n = this.#trySend(w.bytes, w.offset, w.fds);
      if (this.#closed) return;
      if (n === 0) break;
      w.offset += n;
      w.fds = [];
      this.#queuedBytes -= n;
      if (w.offset < w.bytes.length) break;
      this.#writes.shift();
    }
    this.#updateWatch();
  }

  /** Merge the queue's leading run of fd-less messages into one buffer (up to COALESCE_BYTES),
   * so a backlog of small messages (posted writes, pipelined replies) leaves in one sendmsg
   * instead of one each. A message with fds is never merged: its fds must start its own send. */
  #coalesce(): void {
    const first = this.#writes[0]!;
    if (first.fds.length > 0 || this.#writes.length < 2) return;
    let total = first.bytes.length - first.offset;
    let count = 1;
    while (count < this.#writes.length) {
      const w = this.#writes[count]!;
      if (w.fds.length > 0 || total + w.bytes.length > COALESCE_BYTES) break;
      total += w.bytes.length;
      count++;
    }
    if (count < 2) return;
    const merged = new Uint8Array(total);
    let at = 0;
    for (const w of this.#writes.splice(0, count)) {
      merged.set(w.offset ? w.bytes.subarray(w.offset) : w.bytes, at);
      at += w.bytes.length - w.offset;
    }
    this.#writes.unshift({ bytes: merged, offset: 0, fds: [] });
  }

  #updateWatch(): void {
    if (this.#closed || !this.#handlers) return;
    let events = 0;
    if (!this.#paused) events |= PollEvent.READABLE;
    if (this.#writes.length > 0) events |= PollEvent.WRITABLE;
    if (events === this.#watching) return;
    this.#watching = events;
    if (events === 0) this.#poller.stop();
    else this.#poller.start(events);
  }

  #onPoll(status: number, events: number): void {
    if (this.#closed) return;
    if (status < 0) {
      this.close(new Error(`socket poll failed (libuv status ${status})`));
      return;
    }
    if (events & PollEvent.WRITABLE) this.#flushWrites();
    if (events & PollEvent.READABLE && !this.#paused) this.#read();
  }

  #read(): void {
    const buf = sharedReadBuffer!;
    // Read until the kernel has nothing more, or a read returns less than a full buffer (the
    // level-triggered watcher brings us back if more arrives).
    for (;;) {
      let r: ReturnType<typeof native.recvMsg>;
      try {
        r = native.recvMsg(this.#fd, buf, 0, buf.length, this.#opts.maxRecvFds);
      } catch (err) {
        this.close(err as Error);
        return;
      }
      if (r === null) break;
      if (r.bytes === 0) {
        closeFds(r.fds);
        this.close(null);
        return;
      }
      this.#reader.push(buf.subarray(0, r.bytes), r.fds, r.ctrunc);
      if (r.bytes < buf.length) break;
    }
    this.#deliver();
  }

  #deliver(): void {
    if (this.#delivering) return;
    this.#delivering = true;
    let delivered = 0;
    try {
      while (!this.#closed && !this.#paused) {
        const frame = this.#reader.take(this.#handlers, (err) => this.close(err));
        if (!frame) break;
        delivered++;
        this.#handlers?.onFrame(frame);
      }
    } finally {
      this.#delivering = false;
    }
    if (delivered > 0 && !this.#closed) this.#handlers?.onBatchEnd?.();
  }
}
