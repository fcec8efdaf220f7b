// DEVICE_RESET (13): no body either way. The request and the reply are header-only; anything
// after the header is malformed.

import { EMPTY, exactBytes } from "../bytes.ts";

/** Throws ProtocolError(EINVAL) unless the body is empty. */
export function decodeDeviceReset(body: Uint8Array): void {
  exactBytes(body, 0, "DEVICE_RESET");
}

/** The empty body. */
export function encodeDeviceReset(): Uint8Array {
  return EMPTY;
}
