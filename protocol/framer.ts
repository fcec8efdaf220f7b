// Cuts the received byte stream into messages ("frames") and says which fds came with which one.
//
// The transport reads whatever the socket has and pushes it here; next() hands out complete
// frames in order. push() parses as it goes, so every byte is copied once, straight into the
// buffer of the message it belongs to: a header is decoded in place when the chunk holds all of
// it (else its bytes wait in one fixed 16-byte staging array, so nothing is allocated before a
// full header has arrived), then the body gets a buffer of exactly its size (or a slice of the
// chunk when the chunk holds the whole body). The caller may reuse its read buffer after push()
// returns, and a frame's body stays valid forever. The total work is O(bytes pushed).
//
// FD RULE: fds pushed with a chunk belong to the message that contains the chunk's LAST byte.
// That is what a Linux unix stream socket guarantees to a reader: a recvmsg() that picks up
// SCM_RIGHTS fds stops right after the segment that carried them, and senders attach fds to the
// sendmsg() that starts the message (QEMU sends header + payload in one sendmsg), so the last
// byte of such a read always lies in the fds' own message. fds pushed with an empty chunk go
// to the next message to complete. The framer only counts fds; it never closes one.
// OWNERSHIP: a frame's fds pass to whoever takes the frame from next(); fds of a message that
// never completed stay here until takePendingFds() (or discard()) hands them back for closing.
//
// Framing errors (the stream itself is broken: msg_size < 16 → EINVAL, msg_size > maxMessageSize
// → E2BIG, type bits neither command nor reply → EINVAL) are thrown by next() as FramingError
// once every complete frame before the bad header has been handed out. The error carries the
// decoded header, so a server can still answer its msg_id before closing. After that the framer
// stays failed: every next() throws the same error, bytes pushed later are dropped, and fds
// pushed later are kept for takePendingFds().

import { EMPTY } from "./bytes.ts";
import { commandName, Errno, HEADER_SIZE, HeaderFlag } from "./constants.ts";
import { FramingError } from "./errors.ts";
import { decodeHeader, type MessageHeader } from "./header.ts";

export interface Frame {
  header: MessageHeader;
  body: Uint8Array;
  fds: number[];
}

export interface FramerOptions {
  /** Largest acceptable msg_size, header included. */
  maxMessageSize: number;
}

export class Framer {
  readonly #maxMessageSize: number;
  readonly #staging = new Uint8Array(HEADER_SIZE);
  #stagingFill = 0;
  #header: MessageHeader | null = null; // header of the message being assembled
  #body: Uint8Array = EMPTY;
  #bodyFill = 0;
  #pendingFds: number[] = []; // fds of the incomplete message; after a failure, every fd held
  #ready: (Frame | undefined)[] = [];
  #readyHead = 0;
  #readyBytes = 0;
  #failure: FramingError | null = null;

  constructor(opts: FramerOptions) {
    const max = opts.maxMessageSize;
    if (!Number.isInteger(max) || max < HEADER_SIZE || max > 0xffffffff) {
      throw new RangeError(`maxMessageSize must be an integer in [16, 2^32), got ${max}`);
    }
    this.#maxMessageSize = max;
  }

  /**
   * Takes a received chunk (copied as needed: the caller may reuse it afterwards) and the fds
   * that arrived with it (see the FD RULE above). Never throws for bad input; see next().
   */
  push(chunk: Uint8Array, fds?: readonly number[]): void {
    let lastFrame: Frame | null = null; // the frame completed by the chunk's last byte, if any
    let pos = 0;
    const end = chunk.length;
    while (pos < end && this.#failure === null) {
      lastFrame = null;
      if (this.#header === null) {
        let header: MessageHeader;
        if (this.#stagingFill === 0 && end - pos >= HEADER_SIZE) {
          header = decodeHeader(chunk, pos);
          pos += HEADER_SIZE;
        } else {
          const take = Math.min(HEADER_SIZE - this.#stagingFill, end - pos);
          this.#staging.set(chunk.subarray(pos, pos + take), this.#stagingFill);
          this.#stagingFill += take;
          pos += take;
          if (this.#stagingFill < HEADER_SIZE) break;
          this.#stagingFill = 0;
          header = decodeHeader(this.#staging);
        }
        this.#failure = this.#check(header);
        if (this.#failure !== null) break; // the rest of the stream is meaningless: drop it
        const bodyLength = header.msgSize - HEADER_SIZE;
        if (end - pos >= bodyLength) {
          const body = bodyLength === 0 ? EMPTY : chunk.slice(pos, pos + bodyLength);
          pos += bodyLength;
          lastFrame = this.#complete(header, body);
          continue;
        }
        this.#header = header;
        this.#body = new Uint8Array(bodyLength);
        this.#bodyFill = 0;
      }
      const take = Math.min(end - pos, this.#body.length - this.#bodyFill);
      this.#body.set(chunk.subarray(pos, pos + take), this.#bodyFill);
      this.#bodyFill += take;
      pos += take;
      if (this.#bodyFill === this.#body.length) {
        const header = this.#header;
        const body = this.#body;
        this.#header = null;
        this.#body = EMPTY;
        this.#bodyFill = 0;
        lastFrame = this.#complete(header, body);
      }
    }
    if (fds !== undefined && fds.length > 0) {
      if (lastFrame !== null && this.#failure === null) lastFrame.fds.push(...fds);
      else this.#pendingFds.push(...fds);
    }
  }

  /** The next complete frame, or null. Throws the FramingError once the good frames are out. */
  next(): Frame | null {
    if (this.#readyHead < this.#ready.length) {
      const frame = this.#ready[this.#readyHead] as Frame;
      this.#ready[this.#readyHead++] = undefined;
      if (this.#readyHead === this.#ready.length) {
        this.#ready.length = 0;
        this.#readyHead = 0;
      }
      this.#readyBytes -= HEADER_SIZE + frame.body.length;
      return frame;
    }
    if (this.#failure !== null) throw this.#failure;
    return null;
  }

  /**
   * Hands back the fds of the message still being assembled, and after a failure every fd the
   * framer holds. OWNERSHIP: they pass to the caller (who normally closes them). fds of complete
   * frames still waiting in next() are not included; use discard() to drop those too.
   */
  takePendingFds(): number[] {
    const fds = this.#pendingFds;
    this.#pendingFds = [];
    return fds;
  }

  /**
   * Teardown: drops the queued frames and the partial message and returns every fd they held
   * (OWNERSHIP: the caller closes them). A failed framer stays failed.
   */
  discard(): number[] {
    const fds: number[] = [];
    for (let i = this.#readyHead; i < this.#ready.length; i++) fds.push(...(this.#ready[i] as Frame).fds);
    fds.push(...this.#pendingFds);
    this.#ready = [];
    this.#readyHead = 0;
    this.#readyBytes = 0;
    this.#pendingFds = [];
    this.#header = null;
    this.#body = EMPTY;
    this.#bodyFill = 0;
    this.#stagingFill = 0;
    return fds;
  }

  /** Bytes received and not yet handed out by next(): queued frames plus the partial message. */
  get buffered(): number {
    const partial = this.#header === null ? this.#stagingFill : HEADER_SIZE + this.#bodyFill;
    return this.#readyBytes + partial;
  }

  /** True once a framing error was seen (next() will throw it after the queued frames). */
  get failed(): boolean {
    return this.#failure !== null;
  }

  #complete(header: MessageHeader, body: Uint8Array): Frame {
    const frame: Frame = { header, body, fds: this.#pendingFds };
    this.#pendingFds = [];
    if (this.#readyHead > 1024 && this.#readyHead * 2 > this.#ready.length) {
      this.#ready = this.#ready.slice(this.#readyHead);
      this.#readyHead = 0;
    }
    this.#ready.push(frame);
    this.#readyBytes += HEADER_SIZE + body.length;
    return frame;
  }

  #check(h: MessageHeader): FramingError | null {
    const what = `msg_id ${h.msgId} ${commandName(h.command)}`;
    if (h.msgSize < HEADER_SIZE) {
      return new FramingError(
        Errno.EINVAL,
        `framing: ${what} has msg_size ${h.msgSize}, below the header size`,
        h,
      );
    }
    if (h.msgSize > this.#maxMessageSize) {
      return new FramingError(
        Errno.E2BIG,
        `framing: ${what} has msg_size ${h.msgSize}, over the limit of ${this.#maxMessageSize}`,
        h,
      );
    }
    const type = h.flags & HeaderFlag.TYPE_MASK;
    if (type !== HeaderFlag.COMMAND && type !== HeaderFlag.REPLY) {
      return new FramingError(
        Errno.EINVAL,
        `framing: ${what} has message type ${type} (flags 0x${h.flags.toString(16)})`,
        h,
      );
    }
    return null;
  }
}
