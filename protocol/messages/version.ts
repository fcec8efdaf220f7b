// VERSION (command 1): the first message of a connection, same layout both ways:
//   0: u16 major   2: u16 minor   4: JSON capabilities text, UTF-8, NUL-terminated (optional)
// The JSON is kept as raw text (no parsing here: see capabilities.ts), so a decoded message
// re-encodes byte for byte, spaces and key order included.

import { invalid, needBytes, readU16, writeU16 } from "../bytes.ts";

export interface Version {
  major: number;
  minor: number;
  /** The JSON text without its NUL; null when the body is only the 4 version bytes. */
  json: string | null;
}

const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

/**
 * Throws ProtocolError(EINVAL) for a body under 4 bytes, JSON that does not end in NUL, a NUL
 * inside the JSON, or text that is not UTF-8.
 */
export function decodeVersion(body: Uint8Array): Version {
  needBytes(body, 4, "VERSION");
  const major = readU16(body, 0);
  const minor = readU16(body, 2);
  if (body.length === 4) return { major, minor, json: null };
  const last = body.length - 1;
  if (body[last] !== 0) invalid("VERSION: the JSON is not NUL-terminated");
  const text = body.subarray(4, last);
  if (text.indexOf(0) !== -1)
    invalid(`VERSION: NUL byte inside the JSON at body offset ${4 + text.indexOf(0)}`);
  let json: string;
  try {
    json = utf8Decoder.decode(text);
  } catch {
    invalid("VERSION: the JSON is not valid UTF-8");
  }
  return { major, minor, json };
}

/** 4 bytes, plus the JSON and its NUL when json is not null. Throws RangeError for a NUL in json. */
export function encodeVersion(v: Version): Uint8Array {
  if (v.json === null) {
    const out = new Uint8Array(4);
    writeU16(out, 0, v.major, "major");
    writeU16(out, 2, v.minor, "minor");
    return out;
  }
  if (v.json.includes("\0")) throw new RangeError("VERSION: the JSON text contains a NUL");
  const text = utf8Encoder.encode(v.json);
  const out = new Uint8Array(4 + text.length + 1);
  writeU16(out, 0, v.major, "major");
  writeU16(out, 2, v.minor, "minor");
  out.set(text, 4);
  return out;
}
