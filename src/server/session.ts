// One client connection to one device. Theory of operation:
// - Frames arrive from the transport. Replies (to our DMA_READ/DMA_WRITE requests) are matched by
//   msg_id and settled at once; commands go to a queue processed strictly in arrival order. A
//   handler may be async: the next command waits for it, so a posted write is applied before a
//   later read sees the region.
// - Every command without NO_REPLY gets exactly one reply carrying its msg_id; a failure is a
//   header-only reply with the errno. A NO_REPLY command is never answered, not even on error.
// - A malformed message gets its errno and the session goes on; only a broken stream (bad
//   framing) or a first message other than VERSION ends it.
// - Handlers never wait for the client (DMA to fd-less memory goes out as requests the device
//   awaits after its reply has been sent), so the client's own wait for our reply cannot deadlock.
// - When the connection goes, every DMA map and interrupt fd the client gave is released and the
//   device is reset for the next client.
// - The end of each batch of frames from the transport (one socket read) is a write-combining
//   flush point: once the batch's commands have run, the device delivers its pending combined
//   writes (`flushWrites("batch")`), in order with the commands around it.
import {
  type Capabilities,
  Command,
  commandName,
  describeMessage,
  describeMessageBytes,
  Errno,
  ErrnoError,
  encodeErrorReply,
  encodeMessage,
  errnoName,
  FramingError,
  HeaderFlag,
  wantsReply,
} from "../../protocol/index.ts";
import type { DeviceModel } from "../device/device.ts";
import { AddressSpace } from "../iommu/address-space.ts";
import type { DeviceDma } from "../iommu/dma.ts";
import { type Connection, PeerNotReadingError, type ReceivedFrame } from "../transport/connection.ts";
import { RequestEngine } from "../transport/request-engine.ts";
import { describe, errnoOf, VfuError } from "../util/errors.ts";
import { closeFds } from "../util/fds.ts";
import type { Logger } from "../util/log.ts";
import { RateLimiter } from "../util/rate-limit.ts";
import { type HandlerResult, handlerFor } from "./dispatch.ts";
import { createMessagePort, type DmaLayout } from "./handlers/dma-messages.ts";
import { Limits } from "./limits.ts";

const BATCH_END = Symbol("batch end");

/** Commands whose refusal is the device refusing an access (logged as a warning). */
const REGION_ACCESSES = new Set<number>([
  Command.REGION_READ,
  Command.REGION_WRITE,
  Command.REGION_WRITE_MULTI,
]);

export interface SessionOptions {
  log: Logger;
  dma: DeviceDma;
  /** Offer REGION_WRITE_MULTI in the VERSION reply. */
  writeMultiple: boolean;
  /** Byte layout of the DMA_READ/DMA_WRITE messages we send (see README: QEMU layouts). */
  dmaLayout: DmaLayout;
  /** Log every message at debug level. */
  verbose: boolean;
  /** Accept DMA_MAP fds not sealed against shrinking (see dma-fd-policy.ts; default false). */
  allowUnsealedDmaFds?: boolean;
  /** Offer memory-backed regions for mmap (default true). False reports every region without
   * MMAP, so QEMU keeps posting writes (README: mmap or posted writes). */
  mmap?: boolean;
}

export class Session {
  readonly conn: Connection;
  readonly device: DeviceModel;
  readonly space: AddressSpace;
  readonly log: Logger;
  readonly options: SessionOptions;
  /** The client's capabilities once VERSION has been negotiated. */
  clientCaps: Capabilities | null = null;
  /** Commands waiting their turn, and BATCH_END marks where a transport batch ended. */
  readonly #queue: (ReceivedFrame | typeof BATCH_END)[] = [];
  /** Our requests to the client (DMA_READ/DMA_WRITE), matched to its replies. */
  readonly #requests: RequestEngine;
  #processing = false;
  #closing = false;
  #idle: (() => void) | null = null;
  readonly #refusals = new RateLimiter(Limits.refusedLogBurst, Limits.refusedLogWindowMs);
  /** Why this side closed the connection, for the disconnect line. */
  #closedBy: { why: string; warn: boolean } | null = null;
  readonly ended: Promise<void>;
  #resolveEnded!: () => void;

  constructor(conn: Connection, device: DeviceModel, options: SessionOptions) {
    this.conn = conn;
    this.device = device;
    this.options = options;
    this.log = options.log;
    this.space = new AddressSpace({
      maxDmaMaps: Limits.maxDmaMaps,
      pgsize: Limits.pgsizes,
      log: options.log,
    });
    this.space.messages = createMessagePort(this);
    options.dma.attach(this.space);
    this.#requests = new RequestEngine(conn, {
      timeoutMs: Limits.requestTimeoutMs,
      log: options.log,
      onSend: options.verbose
        ? (message) => this.log.debug(`=> ${describeMessageBytes(message, this.#describeWith([]))}`)
        : undefined,
    });
    this.ended = new Promise((resolve) => {
      this.#resolveEnded = resolve;
    });
    conn.setHandlers({
      onFrame: (frame) => this.#onFrame(frame),
      onBrokenStream: (err, header) => this.#onBrokenStream(err, header),
      onClose: (err) => this.#onClose(err),
      onBatchEnd: () => this.#onBatchEnd(),
    });
  }

  get negotiated(): boolean {
    return this.clientCaps !== null;
  }

  /** Close the connection; the teardown runs once the command at hand has finished. `reason`
   * goes into the disconnect line: a string for an orderly close (logged as info), an Error for
   * a client the server had to drop (a warning). */
  close(reason: string | Error = "closed by the server"): void {
    if (!this.#closing && this.#closedBy === null) {
      this.#closedBy =
        typeof reason === "string" ? { why: reason, warn: false } : { why: reason.message, warn: true };
    }
    this.conn.close(null);
  }

  #onFrame(frame: ReceivedFrame): void {
    if (this.#closing) {
      closeFds(frame.fds);
      return;
    }
    if ((frame.header.flags & HeaderFlag.TYPE_MASK) === HeaderFlag.REPLY) {
      if (this.options.verbose)
        this.log.debug(`<= ${describeMessage(frame.header, frame.body, this.#describeWith(frame.fds))}`);
      this.#requests.handleReply(frame);
      return;
    }
    if (!this.#processing) {
      // Nothing in progress: handle it now. Only an asynchronous handler starts the queue.
      this.#processing = true;
      const pending = this.#handle(frame);
      if (pending) void this.#process(pending);
      else {
        this.#processing = false;
        this.#idle?.(); // a teardown started by this very command waits for it
      }
      return;
    }
    this.#queue.push(frame);
    if (this.#queue.length >= Limits.maxQueuedCommands) this.conn.pause();
  }

  #onBatchEnd(): void {
    if (this.#closing || !this.negotiated) return;
    if (this.#processing) {
      this.#queue.push(BATCH_END);
      return;
    }
    this.#processing = true;
    const pending = this.#flushBatch();
    if (pending) void this.#process(pending);
    else {
      this.#processing = false;
      this.#idle?.();
    }
  }

  /** The batch-end flush point; a promise only when a delivery is asynchronous. */
  #flushBatch(): Promise<void> | undefined {
    const r = this.device.flushWrites("batch");
    return r instanceof Promise ? r : undefined;
  }

  /** Work through the queue in order, starting by waiting for the handler already running. */
  async #process(first: Promise<void>): Promise<void> {
    this.#processing = true;
    try {
      await first;
      while (this.#queue.length > 0 && !this.#closing) {
        const frame = this.#queue.shift()!;
        const r = frame === BATCH_END ? this.#flushBatch() : this.#handle(frame);
        if (r) await r;
        if (this.#queue.length < Limits.maxQueuedCommands / 2) this.conn.resume();
      }
    } finally {
      this.#processing = false;
      this.#idle?.();
    }
  }

  /** Handle one command; returns a promise only when the handler is asynchronous. */
  #handle(frame: ReceivedFrame): Promise<void> | undefined {
    const { header } = frame;
    if (this.options.verbose)
      this.log.debug(`<- ${describeMessage(header, frame.body, this.#describeWith(frame.fds))}`);
    let result: HandlerResult | Promise<HandlerResult>;
    try {
      // The VERSION rule comes first: a first command that is not VERSION ends the connection
      // whatever else is wrong with it (checked later, too many fds would get EINVAL and leave an
      // unnegotiated connection open).
      if (!this.negotiated && header.command !== Command.VERSION) {
        this.#fail(
          frame,
          new VfuError(Errno.EINVAL, `the first message must be VERSION, not ${commandName(header.command)}`),
        );
        this.close(new Error("client did not start with VERSION"));
        return undefined;
      }
      if (frame.fdsTruncated) {
        throw new VfuError(
          Errno.EINVAL,
          `more fds than max_msg_fds (${Limits.maxMsgFds}) came with this message`,
        );
      }
      const handler = handlerFor(header.command);
      if (!handler) {
        throw new VfuError(
          Errno.ENOSYS,
          `unknown or client-illegal command ${header.command} (${commandName(header.command)})`,
        );
      }
      if (!handler.takesFds && frame.fds.length > 0) {
        throw new VfuError(
          Errno.EINVAL,
          `${commandName(header.command)} takes no fds but ${frame.fds.length} came`,
        );
      }
      result = handler.handle(this, frame);
    } catch (err) {
      this.#fail(frame, err);
      return undefined;
    }
    if (result instanceof Promise) {
      return result.then(
        (r) => this.#succeed(frame, r),
        (err) => this.#fail(frame, err),
      );
    }
    this.#succeed(frame, result);
    return undefined;
  }

  #succeed(frame: ReceivedFrame, result: HandlerResult): void {
    closeFds(frame.fds);
    if (!wantsReply(frame.header.flags)) return;
    const { header } = frame;
    let message: Uint8Array;
    let fds: readonly number[] = [];
    if (result instanceof Uint8Array) {
      message = result;
    } else {
      message = encodeMessage(
        { msgId: header.msgId, command: header.command, flags: HeaderFlag.REPLY },
        result?.body ?? null,
      );
      fds = result?.fds ?? [];
    }
    if (this.options.verbose) this.log.debug(`-> ${describeMessageBytes(message, this.#describeWith(fds))}`);
    this.conn.send(message, fds);
  }

  #fail(frame: ReceivedFrame, err: unknown): void {
    closeFds(frame.fds);
    const { header } = frame;
    const errno = errnoOf(err);
    const expected = err instanceof ErrnoError;
    if (expected && REGION_ACCESSES.has(header.command)) {
      this.#logRefused(header, errno, describe(err));
    } else if (expected) {
      this.log.debug(
        `${commandName(header.command)} id=${header.msgId} failed: ${errnoName(errno)}: ${describe(err)}`,
      );
    } else {
      this.log.error(
        `${commandName(header.command)} id=${header.msgId}: handler error answered with ${errnoName(errno)}: ${
          err instanceof Error ? (err.stack ?? err.message) : String(err)
        }`,
      );
    }
    if (!wantsReply(header.flags)) return;
    const reply = encodeErrorReply(header.msgId, header.command, errno);
    if (this.options.verbose) this.log.debug(`-> ${describeMessageBytes(reply)}`);
    this.conn.send(reply);
  }

  /** A region access the device refused: a warning with its reason, at most
   * `Limits.refusedLogBurst` per cause (the reason with its numbers left out) per window. */
  #logRefused(header: ReceivedFrame["header"], errno: number, reason: string): void {
    const line = `refused ${commandName(header.command)}: ${errnoName(errno)}: ${reason}`;
    const cause = line.replace(/0x[0-9a-f]+|\d+/gi, "#");
    const { allowed, suppressed } = this.#refusals.take(cause, line);
    if (!allowed) return;
    const more = suppressed ? ` (${suppressed} more like it not logged)` : "";
    this.log.warn(
      `refused ${commandName(header.command)} id=${header.msgId}: ${errnoName(errno)}: ${reason}${more}`,
    );
  }

  #onBrokenStream(err: Error & { errno?: number }, header: ReceivedFrame["header"] | null): void {
    if (header && (header.flags & HeaderFlag.TYPE_MASK) === HeaderFlag.COMMAND && wantsReply(header.flags)) {
      this.conn.send(encodeErrorReply(header.msgId, header.command, err.errno ?? Errno.EINVAL));
    }
  }

  // ---- server-to-client requests -------------------------------------------------------------

  /** Send a command to the client and wait for its reply (see request-engine.ts). Rejects with
   * a RequestError (a VfuError) carrying the errno of an error reply, ETIMEDOUT after the request
   * timeout, ENOTCONN on close. */
  request(command: number, body: Uint8Array): Promise<ReceivedFrame> {
    if (this.#closing) return Promise.reject(new VfuError(Errno.ENOTCONN, "the client is gone"));
    return this.#requests.request(command, body);
  }

  /** How the verbose lines describe a message of this session. */
  #describeWith(fds: readonly number[]): { fds: readonly number[]; dmaLayout: DmaLayout } {
    return { fds, dmaLayout: this.options.dmaLayout };
  }

  // ---- teardown ------------------------------------------------------------------------------

  #onClose(err: Error | null): void {
    if (this.#closing) return;
    this.#closing = true;
    for (const { count, last } of this.#refusals.drain()) this.log.warn(`${count} more not logged: ${last}`);
    // An orderly end (the client closed, the server stops) is news; a client that was dropped
    // or whose stream broke is worth a warning.
    const { why, warn } = this.#closedBy ?? disconnectReason(err);
    if (warn) this.log.warn(`client disconnected: ${why}`);
    else this.log.info(`client disconnected: ${why}`);
    void this.#teardown();
  }

  async #teardown(): Promise<void> {
    this.#requests.close("the client disconnected");
    for (const f of this.#queue) if (f !== BATCH_END) closeFds(f.fds);
    this.#queue.length = 0;
    if (this.#processing) {
      await new Promise<void>((resolve) => {
        this.#idle = resolve;
      });
    }
    try {
      // The device is told of each area going and its transfers finish before the space is
      // empty; only then does it lose the space (new DMA faults "no-client").
      await this.space.unmapAll();
    } catch (e) {
      this.log.error(`releasing the client's DMA maps failed: ${describe(e)}`);
    }
    this.options.dma.attach(null);
    try {
      await this.device.disconnect();
    } catch (e) {
      this.log.error(`device reset after disconnect failed: ${describe(e)}`);
    }
    // `ended` resolves whatever failed above, so the endpoint can serve the next client.
    this.#resolveEnded();
  }
}

/** What ended a connection the client or the transport closed (`err` null: a clean EOF). */
function disconnectReason(err: Error | null): { why: string; warn: boolean } {
  if (err === null) return { why: "the client closed the connection", warn: false };
  if (err instanceof FramingError) return { why: `broken stream: ${err.message}`, warn: true };
  if (err instanceof PeerNotReadingError) {
    return { why: `dropped for not reading its replies: ${err.message}`, warn: true };
  }
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ECONNRESET") return { why: "the client reset the connection", warn: true };
  if (code === "EPIPE") return { why: "the client closed the connection while a reply was sent", warn: true };
  return { why: err.message, warn: true };
}
