// Turns received chunks (with their fds) into frames for one connection, shared by the socket
// and the in-memory transports. It keeps the stream offset of every chunk so that a chunk that
// arrived with truncated fds (MSG_CTRUNC) marks exactly the message that contained its last byte,
// the same message its fds would have belonged to (see protocol/framer.ts).
import { type Frame, Framer, FramingError } from "../../protocol/index.ts";
import { closeFds } from "../util/fds.ts";
import type { ConnectionHandlers, ReceivedFrame } from "./connection.ts";

export class StreamReader {
  readonly #framer: Framer;
  /** Stream offset of the next byte to be pushed. */
  #received = 0;
  /** Stream offset where the next frame starts. */
  #consumed = 0;
  /** Stream offsets (of a chunk's last byte) whose fds were truncated, oldest first. */
  readonly #truncatedAt: number[] = [];
  #failed: FramingError | null = null;

  constructor(maxMessageSize: number) {
    this.#framer = new Framer({ maxMessageSize });
  }

  push(chunk: Uint8Array, fds: readonly number[], truncated: boolean): void {
    if (this.#failed) {
      closeFds(fds);
      return;
    }
    if (chunk.length === 0) {
      closeFds(fds);
      return;
    }
    this.#received += chunk.length;
    if (truncated) this.#truncatedAt.push(this.#received - 1);
    this.#framer.push(chunk, fds);
  }

  /** The next complete frame, or null. Throws FramingError once the stream is broken. */
  next(): ReceivedFrame | null {
    if (this.#failed) throw this.#failed;
    let frame: Frame | null;
    try {
      frame = this.#framer.next();
    } catch (err) {
      if (err instanceof FramingError) {
        this.#failed = err;
        closeFds(this.#framer.takePendingFds());
      }
      throw err;
    }
    if (!frame) return null;
    const start = this.#consumed;
    const end = start + frame.header.msgSize;
    this.#consumed = end;
    let fdsTruncated = false;
    while (this.#truncatedAt.length > 0 && this.#truncatedAt[0]! < end) {
      if (this.#truncatedAt[0]! >= start) fdsTruncated = true;
      this.#truncatedAt.shift();
    }
    const received = frame as ReceivedFrame;
    received.fdsTruncated = fdsTruncated;
    return received;
  }

  /** The next frame for a connection to deliver, or null when none is complete. On a broken
   * stream the handlers hear of it (so the offending message can still be answered) and
   * `close(err)` ends the connection before null is returned. */
  take(handlers: ConnectionHandlers | null, close: (err: Error) => void): ReceivedFrame | null {
    try {
      return this.next();
    } catch (err) {
      if (!(err instanceof FramingError)) throw err;
      handlers?.onBrokenStream?.(err, err.header);
      close(err);
      return null;
    }
  }

  /** Release every fd held for an incomplete message (on close). */
  dispose(): void {
    closeFds(this.#framer.takePendingFds());
  }

  get buffered(): number {
    return this.#framer.buffered;
  }
}
