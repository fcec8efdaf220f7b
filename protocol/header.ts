// The 16-byte header that starts every message, in both directions:
//   0: u16 msg_id   2: u16 command   4: u32 msg_size (whole message)   8: u32 flags   12: u32 error
// flags bits 0-3 are the type (0 command, 1 reply), 0x10 NO_REPLY, 0x20 ERROR.
//
// decodeHeader only reads the fields; deciding whether a header is acceptable (size limits, type)
// is the framer's job, because only it knows when the stream is broken. encodeMessage builds a
// whole message (header + body) in one allocation, with msg_size computed from the body.

import { invalid, readU16, readU32, writeU16, writeU32 } from "./bytes.ts";
import { HEADER_SIZE, HeaderFlag } from "./constants.ts";

export interface MessageHeader {
  msgId: number;
  command: number;
  msgSize: number;
  flags: number;
  error: number;
}

/** Reads the header at `offset`. Throws ProtocolError(EINVAL) if fewer than 16 bytes are there. */
export function decodeHeader(bytes: Uint8Array, offset = 0): MessageHeader {
  if (!Number.isInteger(offset) || offset < 0 || bytes.length - offset < HEADER_SIZE) {
    invalid(`message header: ${bytes.length} bytes from offset ${offset}, a header needs ${HEADER_SIZE}`);
  }
  return {
    msgId: readU16(bytes, offset),
    command: readU16(bytes, offset + 2),
    msgSize: readU32(bytes, offset + 4),
    flags: readU32(bytes, offset + 8),
    error: readU32(bytes, offset + 12),
  };
}

/** Writes `h` at `offset` of `out` (which must have room for 16 bytes). Throws RangeError. */
export function encodeHeader(h: MessageHeader, out: Uint8Array, offset = 0): void {
  if (offset < 0 || out.length - offset < HEADER_SIZE) throw new RangeError("no room for a message header");
  writeU16(out, offset, h.msgId, "msgId");
  writeU16(out, offset + 2, h.command, "command");
  writeU32(out, offset + 4, h.msgSize, "msgSize");
  writeU32(out, offset + 8, h.flags, "flags");
  writeU32(out, offset + 12, h.error, "error");
}

export interface MessageHead {
  msgId: number;
  command: number;
  flags: number;
  error?: number;
}

/** Header + body in one new buffer; msg_size is 16 + body length, error defaults to 0. */
export function encodeMessage(h: MessageHead, body?: Uint8Array | null): Uint8Array {
  const length = body ? body.length : 0;
  const out = new Uint8Array(HEADER_SIZE + length);
  encodeHeader(
    { msgId: h.msgId, command: h.command, msgSize: out.length, flags: h.flags, error: h.error ?? 0 },
    out,
  );
  if (body && length > 0) out.set(body, HEADER_SIZE);
  return out;
}

/** The header-only reply that reports `errno` for a command: flags REPLY|ERROR. */
export function encodeErrorReply(msgId: number, command: number, errno: number): Uint8Array {
  return encodeMessage({ msgId, command, flags: HeaderFlag.REPLY | HeaderFlag.ERROR, error: errno });
}

/** The type bits say "reply". */
export function isReply(flags: number): boolean {
  return (flags & HeaderFlag.TYPE_MASK) === HeaderFlag.REPLY;
}

/** A command whose sender waits for an answer (type command, NO_REPLY clear). */
export function wantsReply(flags: number): boolean {
  return (flags & HeaderFlag.TYPE_MASK) === HeaderFlag.COMMAND && (flags & HeaderFlag.NO_REPLY) === 0;
}

/** A reply that reports a failure (type reply, ERROR set). */
export function isErrorReply(flags: number): boolean {
  return isReply(flags) && (flags & HeaderFlag.ERROR) !== 0;
}
