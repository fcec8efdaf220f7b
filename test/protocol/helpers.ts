// Shared by the protocol tests: hex conversion, fixture loading, and errno assertions.

import { readFileSync } from "node:fs";
import type { Test } from "tap";

/** Bytes from hex text; whitespace, underscores and `|` separators are ignored. */
export function hex(text: string): Uint8Array {
  const clean = text.replace(/[\s_|]/g, "");
  if (clean.length % 2 !== 0 || /[^0-9a-f]/i.test(clean)) throw new Error(`bad hex: ${text}`);
  return Uint8Array.from(Buffer.from(clean, "hex"));
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("hex");
}

export interface TraceMessage {
  line: number;
  dir: "C>S" | "S>C";
  msgId: number;
  command: string;
  kind: "cmd" | "reply" | "ERR";
  size: number;
  fds: number;
  fields: Record<string, string | number>;
  hex: string;
  dataApprox?: boolean;
}

export interface TraceFixture {
  source: string;
  messages: TraceMessage[];
}

export function loadTrace(name: "memfd" | "anon"): TraceFixture {
  const url = new URL(`../fixtures/protocol/qemu-11.1-trace-${name}.json`, import.meta.url);
  return JSON.parse(readFileSync(url, "utf8")) as TraceFixture;
}

/** Asserts that fn throws a ProtocolError with this errno (and a message matching `message`). */
export function throwsErrno(
  t: Test,
  fn: () => unknown,
  errno: number,
  message?: RegExp,
  what?: string,
): void {
  const pattern: Record<string, unknown> = { name: "ProtocolError", errno };
  if (message) pattern.message = message;
  t.throws(fn, pattern, what ?? `throws errno ${errno}${message ? ` ${message}` : ""}`);
}

/** A body with `n` bytes removed from its end (for "short body" cases). */
export function shorten(body: Uint8Array, n = 1): Uint8Array {
  return body.subarray(0, body.length - n);
}

/** A copy of `body` with `extra` zero bytes appended. */
export function extend(body: Uint8Array, extra = 1): Uint8Array {
  const out = new Uint8Array(body.length + extra);
  out.set(body);
  return out;
}

/** A copy of `body` with the u32 at `offset` replaced. */
export function withU32(body: Uint8Array, offset: number, value: number): Uint8Array {
  const out = body.slice();
  new DataView(out.buffer).setUint32(offset, value, true);
  return out;
}

/** A copy of `body` with the u64 at `offset` replaced. */
export function withU64(body: Uint8Array, offset: number, value: bigint): Uint8Array {
  const out = body.slice();
  new DataView(out.buffer).setBigUint64(offset, value, true);
  return out;
}
