// The two ways a received message can be wrong.
//
// ProtocolError: one message is malformed (a short body, bad flags, bad JSON...). The stream is
// still in step, so a server answers the message with an error reply carrying `errno` and goes
// on. Every decodeX function throws only this.
//
// FramingError: the byte stream itself is broken (a header with msg_size < 16, a size over the
// limit, an invalid type). Nothing after it can be trusted, so the connection is closed. The
// header is kept when it could be decoded, so a server may still answer its msg_id first.
//
// Encoders throw RangeError instead: a value that does not fit its wire field is a bug in the
// caller, not something the peer sent.

import type { MessageHeader } from "./header.ts";

/** The one base of every error that carries an errno (a value of `Errno`): the codec's, the
 * server's (VfuError), the IOMMU's (DmaFault) and the client's (ClientError). A server answers an
 * ErrnoError with its errno and anything else with EIO. */
export class ErrnoError extends Error {
  readonly errno: number;

  constructor(errno: number, message: string) {
    super(message);
    this.name = "ErrnoError";
    this.errno = errno;
  }
}

export class ProtocolError extends ErrnoError {
  constructor(errno: number, message: string) {
    super(errno, message);
    this.name = "ProtocolError";
  }
}

export class FramingError extends ErrnoError {
  readonly header: MessageHeader | null;

  constructor(errno: number, message: string, header: MessageHeader | null = null) {
    super(errno, message);
    this.name = "FramingError";
    this.header = header;
  }
}
