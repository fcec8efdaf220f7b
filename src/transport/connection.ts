// The transport contract the session and the client speak through: whole frames in, whole
// messages out, with fds. Two implementations: `SocketConnection` (a real UNIX socket owned by the
// native addon) and `createMemoryPair` (an in-process pair for tests and fuzzing).
//
// OWNERSHIP: fds in a received frame belong to the handler of `onFrame`, which keeps or closes
// each one. Fds given to `send` stay the caller's; they must stay open until the message has
// been sent (`queuedBytes` back to 0, or the connection closed).
import type { PeerCredentials } from "../../native/index.ts";
import type { Frame } from "../../protocol/index.ts";

export type { PeerCredentials };

export interface ReceivedFrame extends Frame {
  /** More fds came with this message than the receiver has room for (MSG_CTRUNC): the kernel
   * dropped some and the transport closed the rest, so `fds` is empty. */
  fdsTruncated: boolean;
}

export interface ConnectionHandlers {
  onFrame(frame: ReceivedFrame): void;
  /** The stream broke (framing error) before it closed: the header, when one could be read,
   * lets the receiver answer the offending message before the close. */
  onBrokenStream?(err: Error & { errno?: number }, header: Frame["header"] | null): void;
  /** Called once when the connection is gone: `err` is null for a clean EOF or a local close. */
  onClose(err: Error | null): void;
  /** The frames of one batch have all been handed to `onFrame`: those framed from one read of the
   * socket (or one delivery of the in-memory pair). Not called for a batch of no frames. The
   * session ends its write-combining there. */
  onBatchEnd?(): void;
}

export interface Connection {
  setHandlers(handlers: ConnectionHandlers): void;
  /** Queue a whole message (or several, concatenated) for sending, with fds attached to its first
   * byte. Fds are sent in a sendmsg of their own that starts with this message. */
  send(message: Uint8Array, fds?: readonly number[]): void;
  /** Stop delivering frames (back-pressure); `resume` delivers again. */
  pause(): void;
  resume(): void;
  /** Close now: queued output is dropped, fds held for incomplete messages are closed. */
  close(err?: Error | null): void;
  readonly closed: boolean;
  /** Bytes accepted by `send` and not yet written. */
  readonly queuedBytes: number;
  /** A short name for log lines. */
  readonly name: string;
  /** Who is at the other end (SO_PEERCRED of a UNIX socket); null when the transport cannot say. */
  peerCredentials?(): PeerCredentials | null;
}

/** The reason a connection was closed because its peer left too much output unread. */
export class PeerNotReadingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PeerNotReadingError";
  }
}

export interface ConnectionOptions {
  /** Largest whole message accepted before the stream counts as broken. */
  maxMessageSize: number;
  /** Fds accepted per message; more is reported as `fdsTruncated`. */
  maxRecvFds: number;
  /** Output queued beyond this closes the connection (the peer does not read). */
  maxQueuedBytes: number;
  name?: string;
}
