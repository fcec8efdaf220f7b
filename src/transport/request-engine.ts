// Requests over a Connection matched to their replies by msg_id: the one engine behind the
// server's requests to its client (DMA_READ/DMA_WRITE) and the client's requests to its server.
// Theory of operation:
// - msg_ids are 16 bits. A cursor walks the id space and skips ids still waiting for a reply, so
//   an id comes back into use only after a whole lap (a late reply to a timed-out request is
//   unlikely to meet a new request of the same id). At most half the id space may be outstanding,
//   so over a lap at least every other id is free: two steps per allocation on average.
// - One engine timeout applies to every request, so the insertion order of the pending map is
//   the order of the deadlines: one timer, armed for the oldest request, expires everything due
//   from the front of the map and re-arms for the next one. No timer per request (one costs
//   more than the rest of a round trip) and no sweep over requests that are not due.
// - A reply settles its request once. An error reply rejects with its errno (EIO when it says 0);
//   a reply whose command is not the request's rejects with EINVAL. Fds in a reply are the
//   caller's when the request said it takes that many (`replyFds`), and are all closed otherwise,
//   the request rejected with EINVAL; an error reply's fds are closed. A raw request (`expect`)
//   resolves with whatever reply comes, fds included.
// - A reply that matches no request, or carries another command than its request, is counted in
//   `stats.unexpected`, logged, and handed to `onUnexpected` with its fds already closed.
// - `close` rejects every pending request, and every later one, with ENOTCONN.
import {
  commandName,
  decodeHeader,
  Errno,
  encodeMessage,
  errnoName,
  HEADER_SIZE,
  HeaderFlag,
} from "../../protocol/index.ts";
import { VfuError } from "../util/errors.ts";
import { closeFds } from "../util/fds.ts";
import type { Logger } from "../util/log.ts";
import type { Connection, ReceivedFrame } from "./connection.ts";

export const RequestLimits = {
  /** How long a request waits for its reply unless its engine is told otherwise. QEMU's own
   * per-request timeout is 5 s; waiting as long keeps the two sides' notion of failure aligned. */
  timeoutMs: 5000,
  /** msg_id is a 16-bit header field. */
  msgIdSpace: 0x10000,
  /** Requests one engine may have waiting for replies. Half the id space keeps id allocation at
   * two steps on average (see above); a peer that leaves 32,768 requests unanswered is broken. */
  maxOutstanding: 0x8000,
} as const;

/** A request that failed: an error reply, a bad reply, a timeout, a closed connection. */
export class RequestError extends VfuError {
  readonly command: number;
  constructor(command: number, errno: number, detail?: string) {
    super(errno, `${commandName(command)} failed: ${errnoName(errno)}${detail ? ` (${detail})` : ""}`);
    this.name = "RequestError";
    this.command = command;
  }
}

export interface RequestEngineOptions {
  /** How long a request waits for its reply before it rejects with ETIMEDOUT. */
  timeoutMs: number;
  /** Default RequestLimits.maxOutstanding; lower only to test the bound. */
  maxOutstanding?: number;
  /** The error a failed request rejects with (default: RequestError). */
  error?: (command: number, errno: number, detail: string) => Error;
  /** Unexpected replies are logged here at warn level. */
  log?: Logger;
  /** Told of every unexpected reply (its fds already closed). */
  onUnexpected?: (frame: ReceivedFrame, why: string) => void;
  /** Told of every request as it is sent, with its bytes (verbose tracing). */
  onSend?: (message: Uint8Array) => void;
}

export interface RequestOptions {
  /** Fds sent with the request (they stay the caller's). */
  fds?: readonly number[];
  /** How many fds the reply may carry; they become the caller's (default 0). */
  replyFds?: number;
}

interface Pending {
  command: number;
  /** Resolve with any reply, errors and fds included. */
  raw: boolean;
  replyFds: number;
  /** performance.now() at which the request times out. */
  deadline: number;
  resolve(frame: ReceivedFrame): void;
  reject(err: Error): void;
}

export class RequestEngine {
  readonly conn: Connection;
  readonly stats = { sent: 0, replies: 0, timeouts: 0, unexpected: 0 };
  readonly #timeoutMs: number;
  readonly #maxOutstanding: number;
  readonly #opts: RequestEngineOptions;
  readonly #pending = new Map<number, Pending>();
  #cursor = 0;
  #timer: NodeJS.Timeout | null = null;
  #closed: string | null = null;

  constructor(conn: Connection, opts: RequestEngineOptions) {
    if (!(opts.timeoutMs > 0)) throw new RangeError(`request timeout ${opts.timeoutMs} ms is not positive`);
    const max = opts.maxOutstanding ?? RequestLimits.maxOutstanding;
    if (!(Number.isInteger(max) && max >= 1 && max <= RequestLimits.maxOutstanding))
      throw new RangeError(`maxOutstanding ${max} is not in 1..${RequestLimits.maxOutstanding}`);
    this.conn = conn;
    this.#opts = opts;
    this.#timeoutMs = opts.timeoutMs;
    this.#maxOutstanding = max;
  }

  /** Requests waiting for their replies. */
  get outstanding(): number {
    return this.#pending.size;
  }

  get closed(): boolean {
    return this.#closed !== null || this.conn.closed;
  }

  /** A msg_id no request is waiting on, for a message that expects no reply (NO_REPLY). */
  allocId(): number {
    let id = this.#cursor;
    while (this.#pending.has(id)) id = (id + 1) & 0xffff;
    this.#cursor = (id + 1) & 0xffff;
    return id;
  }

  /** Send `command` with `body` and resolve with its reply. */
  request(command: number, body: Uint8Array | null, opts: RequestOptions = {}): Promise<ReceivedFrame> {
    return this.send(
      command,
      (msgId) => encodeMessage({ msgId, command, flags: HeaderFlag.COMMAND }, body),
      opts,
    );
  }

  /** Send the message `encode` builds for the msg_id given (a whole message, header included) and
   * resolve with its reply. */
  send(
    command: number,
    encode: (msgId: number) => Uint8Array,
    opts: RequestOptions = {},
  ): Promise<ReceivedFrame> {
    const refused = this.#refusal(command);
    if (refused) return Promise.reject(refused);
    const msgId = this.allocId();
    let message: Uint8Array;
    try {
      message = encode(msgId);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#track(msgId, command, false, opts.replyFds ?? 0, message, opts.fds ?? []);
  }

  /** Send `message` exactly as given and resolve with the reply carrying `msgId`, whatever it
   * holds (an error reply, another command, fds: all the caller's). EBUSY when a request already
   * waits on that id. Errors name the command of the message's header (UNKNOWN(-1) when the
   * message is too short to have one). */
  expect(msgId: number, message: Uint8Array, fds: readonly number[] = []): Promise<ReceivedFrame> {
    const command = message.length >= HEADER_SIZE ? decodeHeader(message).command : -1;
    const refused = this.#refusal(command);
    if (refused) return Promise.reject(refused);
    if (!(Number.isInteger(msgId) && msgId >= 0 && msgId <= 0xffff))
      return Promise.reject(this.#error(command, Errno.EINVAL, `msg_id ${msgId} is not 16-bit`));
    if (this.#pending.has(msgId))
      return Promise.reject(this.#error(command, Errno.EBUSY, `a request already waits on id=${msgId}`));
    return this.#track(msgId, command, true, Number.POSITIVE_INFINITY, message, fds);
  }

  #refusal(command: number): Error | null {
    if (this.closed) return this.#error(command, Errno.ENOTCONN, this.#closed ?? "the connection is closed");
    if (this.#pending.size >= this.#maxOutstanding) {
      return this.#error(
        command,
        Errno.EBUSY,
        `${this.#pending.size} requests already wait for replies (at most ${this.#maxOutstanding})`,
      );
    }
    return null;
  }

  #track(
    msgId: number,
    command: number,
    raw: boolean,
    replyFds: number,
    message: Uint8Array,
    fds: readonly number[],
  ): Promise<ReceivedFrame> {
    return new Promise((resolve, reject) => {
      this.#pending.set(msgId, {
        command,
        raw,
        replyFds,
        deadline: performance.now() + this.#timeoutMs,
        resolve,
        reject,
      });
      this.#arm();
      this.stats.sent++;
      this.#opts.onSend?.(message);
      this.conn.send(message, fds);
    });
  }

  /** Settle the request a reply answers. The caller hands over every reply frame it receives. */
  handleReply(frame: ReceivedFrame): void {
    const { header } = frame;
    const p = this.#pending.get(header.msgId);
    if (!p) {
      this.#unexpected(frame, "no request waits for it");
      return;
    }
    this.#pending.delete(header.msgId);
    if (this.#pending.size === 0) this.#timer?.unref();
    this.stats.replies++;
    if (p.raw) {
      p.resolve(frame);
      return;
    }
    if (header.command !== p.command) {
      this.#unexpected(frame, `it answers ${commandName(p.command)} id=${header.msgId}`);
      p.reject(
        this.#error(p.command, Errno.EINVAL, `the reply carried command ${commandName(header.command)}`),
      );
      return;
    }
    if (header.flags & HeaderFlag.ERROR) {
      closeFds(frame.fds);
      p.reject(this.#error(p.command, header.error || Errno.EIO, "error reply"));
      return;
    }
    if (frame.fdsTruncated || frame.fds.length > p.replyFds) {
      const n = frame.fdsTruncated ? "more than max_msg_fds" : String(frame.fds.length);
      closeFds(frame.fds);
      p.reject(
        this.#error(p.command, Errno.EINVAL, `the reply carried ${n} fds, at most ${p.replyFds} expected`),
      );
      return;
    }
    p.resolve(frame);
  }

  /** Reject every pending request, and every later one, with ENOTCONN. Idempotent. */
  close(reason = "the connection closed"): void {
    if (this.#closed !== null) return;
    this.#closed = reason;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(this.#error(p.command, Errno.ENOTCONN, reason));
  }

  #unexpected(frame: ReceivedFrame, why: string): void {
    closeFds(frame.fds);
    frame.fds.length = 0;
    this.stats.unexpected++;
    this.#opts.log?.warn(
      `unexpected reply ${commandName(frame.header.command)} id=${frame.header.msgId} (${why}): dropped`,
    );
    this.#opts.onUnexpected?.(frame, why);
  }

  #error(command: number, errno: number, detail: string): Error {
    return this.#opts.error
      ? this.#opts.error(command, errno, detail)
      : new RequestError(command, errno, detail);
  }

  /** Keep the one timer armed (and holding the loop) while requests wait. */
  #arm(): void {
    if (this.#timer) {
      this.#timer.ref();
      return;
    }
    this.#timer = setTimeout(() => this.#expire(), this.#timeoutMs);
  }

  #expire(): void {
    this.#timer = null;
    const now = performance.now();
    for (const [id, p] of this.#pending) {
      if (p.deadline > now) {
        this.#timer = setTimeout(() => this.#expire(), Math.max(1, p.deadline - now));
        return;
      }
      this.#pending.delete(id);
      this.stats.timeouts++;
      p.reject(this.#error(p.command, Errno.ETIMEDOUT, `id=${id}: no reply within ${this.#timeoutMs} ms`));
    }
  }
}
