// The client end of one fuzz connection: sends messages with fds, matches every reply to the
// command it answers, checks the reply properties, and answers the server's own DMA_READ /
// DMA_WRITE requests (mostly correctly, sometimes with an error, garbage, late or never).
//
// Properties checked on every frame from the server (each failure is a violation string):
// - a reply answers a command that wants one (type command, no NO_REPLY), exactly once, in the
//   order the commands were sent, with the command's own `command` field;
// - an error reply is header-only (msg_size 16) with an errno in 1..4095;
// - the probe sent after each burst gets a success reply;
// - a server request (DMA_READ/DMA_WRITE) carries no fds and no more than the client's
//   max_data_xfer_size.
import { Command, encodeErrorReply, encodeMessage, HEADER_SIZE, HeaderFlag } from "../../protocol/index.ts";
import type { Connection, ReceivedFrame } from "../../src/transport/connection.ts";
import { closeFds } from "../../src/util/fds.ts";
import type { Rng } from "./rng.ts";

interface Expected {
  msgId: number;
  command: number;
  label: string;
  /** The probe: must succeed. */
  mustSucceed: boolean;
  /** A stream breaker: may get one error reply, or none. */
  optional: boolean;
}

export class Conversation {
  readonly conn: Connection;
  readonly violations: string[] = [];
  /** Commands that still wait for their reply, in the order they were sent. */
  readonly #expected: Expected[] = [];
  readonly #byId = new Map<number, Expected>();
  readonly #dmaRng: Rng;
  #nextId = 0;
  #waiter: (() => void) | null = null;
  #closed = false;
  closeError: Error | null = null;
  /** Largest DMA transfer the client said it accepts (VERSION). */
  maxDataXferSize = 1024 * 1024;
  /** Most fds the client said it receives per message (VERSION; the spec's default is 1). */
  maxMsgFds = 1;
  readonly #late: Uint8Array[] = [];
  replies = 0;
  serverRequests = 0;

  constructor(conn: Connection, dmaRng: Rng) {
    this.conn = conn;
    this.#dmaRng = dmaRng;
    conn.setHandlers({
      onFrame: (f) => this.#onFrame(f),
      onClose: (err) => {
        this.#closed = true;
        this.closeError = err;
        this.#wake();
      },
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  get waiting(): number {
    return this.#expected.length;
  }

  /** Labels of the commands still waiting (for a hang report). */
  waitingLabels(): string[] {
    return this.#expected.map((e) => `${e.label}#${e.msgId}`);
  }

  #allocId(): number {
    for (let i = 0; i < 0x10000; i++) {
      const id = this.#nextId;
      this.#nextId = (this.#nextId + 1) & 0xffff;
      if (!this.#byId.has(id)) return id;
    }
    throw new Error("65,536 commands outstanding");
  }

  /** Sends one message (its msg_id is assigned here). Returns whether a reply is expected.
   * OWNERSHIP: `fds` stay the caller's; they must stay open until the burst is answered. */
  send(
    bytes: Uint8Array,
    fds: readonly number[],
    label: string,
    opts: { probe?: boolean; breaker?: boolean } = {},
  ): boolean {
    if (this.#closed) return false;
    const msgId = this.#allocId();
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    if (bytes.length >= 2) v.setUint16(0, msgId, true);
    // Half a message (the client then stalls) is never answered; a stream breaker (a lying
    // msg_size or type) may get one error reply before the close.
    const whole = bytes.length >= HEADER_SIZE && v.getUint32(4, true) === bytes.length;
    const flags = bytes.length >= HEADER_SIZE ? v.getUint32(8, true) : 0;
    const wants =
      (whole || opts.breaker === true) &&
      bytes.length >= HEADER_SIZE &&
      (flags & HeaderFlag.TYPE_MASK) === HeaderFlag.COMMAND &&
      (flags & HeaderFlag.NO_REPLY) === 0;
    if (wants) {
      const e: Expected = {
        msgId,
        command: v.getUint16(2, true),
        label,
        mustSucceed: opts.probe === true,
        optional: opts.breaker === true,
      };
      this.#expected.push(e);
      this.#byId.set(msgId, e);
    }
    this.conn.send(bytes, fds);
    return wants;
  }

  /** Send the replies held back from earlier bursts (late answers to DMA requests). */
  flushLate(): void {
    for (const m of this.#late.splice(0)) this.conn.send(m);
  }

  /** Resolves true when every non-optional command is answered, false on timeout or close. */
  async waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.#idle()) return true;
    if (this.#closed) return false;
    let timer: NodeJS.Timeout | undefined;
    const done = await new Promise<boolean>((resolve) => {
      this.#waiter = () => {
        if (this.#idle()) resolve(true);
        else if (this.#closed) resolve(false);
      };
      timer = setTimeout(() => resolve(this.#idle()), timeoutMs);
    });
    clearTimeout(timer);
    this.#waiter = null;
    return done;
  }

  /** Resolves when the connection has closed; false on timeout. */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    if (this.#closed) return true;
    let timer: NodeJS.Timeout | undefined;
    const done = await new Promise<boolean>((resolve) => {
      this.#waiter = () => {
        if (this.#closed) resolve(true);
      };
      timer = setTimeout(() => resolve(this.#closed), timeoutMs);
    });
    clearTimeout(timer);
    this.#waiter = null;
    return done;
  }

  #idle(): boolean {
    return this.#expected.every((e) => e.optional);
  }

  #wake(): void {
    this.#waiter?.();
  }

  #onFrame(frame: ReceivedFrame): void {
    const { header } = frame;
    if ((header.flags & HeaderFlag.TYPE_MASK) === HeaderFlag.COMMAND) {
      this.#serveRequest(frame);
      return;
    }
    // A region info reply may carry the region's fd; we never map it here.
    if (frame.fds.length > this.maxMsgFds) {
      this.violations.push(
        `reply ${header.command} id=${header.msgId} carries ${frame.fds.length} fds; the client takes ${this.maxMsgFds}`,
      );
    }
    closeFds(frame.fds);
    this.replies++;
    const e = this.#byId.get(header.msgId);
    if (!e) {
      this.violations.push(
        `reply ${header.command} id=${header.msgId} answers nothing (a NO_REPLY command, a duplicate, or no command)`,
      );
      return;
    }
    // Replies come in order: every command sent before this one must have been answered already
    // (a stream breaker is always last, so it never stands before another command).
    const at = this.#expected.indexOf(e);
    for (let i = 0; i < at; i++) {
      const missed = this.#expected[i]!;
      this.violations.push(
        `no reply to ${missed.label} id=${missed.msgId} (command ${missed.command}) before the reply to id=${e.msgId}`,
      );
      this.#byId.delete(missed.msgId);
    }
    this.#expected.splice(0, at + 1);
    this.#byId.delete(e.msgId);
    if (header.command !== e.command) {
      this.violations.push(
        `reply to ${e.label} id=${e.msgId} carries command ${header.command}, not ${e.command}`,
      );
    }
    if (header.flags & HeaderFlag.ERROR) {
      if (header.msgSize !== HEADER_SIZE) {
        this.violations.push(
          `error reply to ${e.label} id=${e.msgId} is ${header.msgSize} bytes, not header-only`,
        );
      }
      if (header.error < 1 || header.error > 4095) {
        this.violations.push(`error reply to ${e.label} id=${e.msgId} carries errno ${header.error}`);
      }
      if (e.mustSucceed) this.violations.push(`the probe id=${e.msgId} failed with errno ${header.error}`);
    }
    this.#wake();
  }

  /** Answer a DMA_READ/DMA_WRITE from the server (spec layout), in one of several ways. */
  #serveRequest(frame: ReceivedFrame): void {
    const { header, body } = frame;
    this.serverRequests++;
    if (frame.fds.length > 0) {
      this.violations.push(
        `server request ${header.command} id=${header.msgId} carried ${frame.fds.length} fds`,
      );
      closeFds(frame.fds);
    }
    if (header.command !== Command.DMA_READ && header.command !== Command.DMA_WRITE) {
      this.violations.push(`server sent command ${header.command}, which a server never sends`);
      return;
    }
    const count =
      body.length >= 16 ? Number(new DataView(body.buffer, body.byteOffset, 16).getBigUint64(8, true)) : -1;
    if (count > this.maxDataXferSize) {
      this.violations.push(
        `server DMA request of ${count} bytes is over the client's max_data_xfer_size ${this.maxDataXferSize}`,
      );
    }
    if (header.flags & HeaderFlag.NO_REPLY) return;
    const r = this.#dmaRng;
    const reply = (out: Uint8Array) => {
      if (r.chance(0.04)) this.#late.push(out);
      else this.conn.send(out);
    };
    const mode = r.weighted([
      [80, "ok"],
      [8, "error"],
      [4, "garbage"],
      [3, "none"],
    ] as const);
    if (mode === "none") return;
    if (mode === "error" || count < 0 || count > 64 * 1024 * 1024) {
      reply(
        encodeErrorReply(header.msgId, header.command, r.pick([1, 2, 5, 14, 19, 22, 0, 4096, 0xffffffff])),
      );
      return;
    }
    if (mode === "garbage") {
      reply(
        encodeMessage(
          { msgId: header.msgId, command: header.command, flags: HeaderFlag.REPLY },
          r.bytes(r.int(40)),
        ),
      );
      return;
    }
    const head = body.subarray(0, 16);
    let out: Uint8Array;
    if (header.command === Command.DMA_READ) {
      out = new Uint8Array(16 + count);
      out.set(head);
      out.fill(0xa5, 16);
    } else {
      out = head.slice();
    }
    reply(encodeMessage({ msgId: header.msgId, command: header.command, flags: HeaderFlag.REPLY }, out));
  }

  close(): void {
    this.conn.close();
  }
}
