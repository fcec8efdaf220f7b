// The JSON capabilities object exchanged in VERSION: {"capabilities": {...}}. Each side states its
// own limits (what it can receive), with defaults from the spec for every absent key.
//
// parseCapabilities validates the way libvfio-user does: the JSON
// must be an object, `capabilities` an object, numeric values non-negative safe integers,
// max_msg_fds at most 1024, write_multiple a boolean, twin_socket and migration objects. Unknown
// keys are ignored (QEMU only warns about them). Peer-specific limits (QEMU's) are the
// session's business, not this file's.
//
// formatCapabilities writes compact JSON with only the keys given, in a fixed order, so a reply
// stays short and byte-stable (QEMU refuses a VERSION reply longer than its own request).

import { Errno } from "./constants.ts";
import { ProtocolError } from "./errors.ts";

export interface Capabilities {
  /** Most fds the sender can receive in one message. */
  maxMsgFds: number;
  /** Largest count the sender accepts in REGION_READ/WRITE and DMA_READ/WRITE. */
  maxDataXferSize: number;
  /** Most simultaneous DMA mappings (meaningful from a server). */
  maxDmaMaps: number;
  /** Bitmap of page sizes supported for DMA_MAP (meaningful from a server). */
  pgsizes: number;
  /** The sender accepts REGION_WRITE_MULTI. */
  writeMultiple: boolean;
  /** Twin-socket mode (fdIndex only in a server's reply); null when absent. */
  twinSocket: { supported: boolean; fdIndex?: number } | null;
  /** Legacy migration-v1 object (QEMU still sends it); null when absent. */
  migration: { pgsize: number; maxBitmapSize?: number } | null;
}

/** The spec's values for absent keys. */
export const DEFAULT_CAPABILITIES: Readonly<Capabilities> = Object.freeze({
  maxMsgFds: 1,
  maxDataXferSize: 1048576,
  maxDmaMaps: 65535,
  pgsizes: 4096,
  writeMultiple: false,
  twinSocket: null,
  migration: null,
});

/** The largest max_msg_fds accepted from a peer (libvfio-user's bound). */
export const MAX_MSG_FDS_LIMIT = 1024;

type Json = Record<string, unknown>;

function fail(message: string): never {
  throw new ProtocolError(Errno.EINVAL, `capabilities: ${message}`);
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function own(o: Json, key: string): unknown {
  return Object.hasOwn(o, key) ? o[key] : undefined;
}

function count(o: Json, key: string, path: string, fallback: number): number;
function count(o: Json, key: string, path: string, fallback?: number): number | undefined;
function count(o: Json, key: string, path: string, fallback?: number): number | undefined {
  const v = own(o, key);
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    fail(`${path}${key} must be a non-negative integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * Parses the JSON text of a VERSION message (null or absent JSON means all defaults).
 * Throws ProtocolError(EINVAL) naming the offending key.
 */
export function parseCapabilities(json: string | null): Capabilities {
  if (json === null) return { ...DEFAULT_CAPABILITIES };
  let top: unknown;
  try {
    top = JSON.parse(json);
  } catch (e) {
    fail(`not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(top)) fail("the JSON is not an object");
  const caps = own(top, "capabilities");
  if (caps === undefined) return { ...DEFAULT_CAPABILITIES };
  if (!isObject(caps)) fail('"capabilities" is not an object');

  const maxMsgFds = count(caps, "max_msg_fds", "", DEFAULT_CAPABILITIES.maxMsgFds);
  if (maxMsgFds > MAX_MSG_FDS_LIMIT) fail(`max_msg_fds ${maxMsgFds} is over ${MAX_MSG_FDS_LIMIT}`);
  const maxDataXferSize = count(caps, "max_data_xfer_size", "", DEFAULT_CAPABILITIES.maxDataXferSize);
  const maxDmaMaps = count(caps, "max_dma_maps", "", DEFAULT_CAPABILITIES.maxDmaMaps);
  const pgsizes = count(caps, "pgsizes", "", DEFAULT_CAPABILITIES.pgsizes);

  const wm = own(caps, "write_multiple");
  if (wm !== undefined && typeof wm !== "boolean")
    fail(`write_multiple must be a boolean, got ${JSON.stringify(wm)}`);
  const writeMultiple = wm ?? DEFAULT_CAPABILITIES.writeMultiple;

  let twinSocket: Capabilities["twinSocket"] = null;
  const ts = own(caps, "twin_socket");
  if (ts !== undefined) {
    if (!isObject(ts)) fail("twin_socket is not an object");
    const supported = own(ts, "supported");
    if (supported !== undefined && typeof supported !== "boolean")
      fail("twin_socket.supported must be a boolean");
    twinSocket = { supported: supported ?? false };
    const fdIndex = count(ts, "fd_index", "twin_socket.");
    if (fdIndex !== undefined) twinSocket.fdIndex = fdIndex;
  }

  let migration: Capabilities["migration"] = null;
  const mig = own(caps, "migration");
  if (mig !== undefined) {
    if (!isObject(mig)) fail("migration is not an object");
    const pgsize = count(mig, "pgsize", "migration.");
    if (pgsize === undefined) fail("migration.pgsize is missing");
    migration = { pgsize };
    const maxBitmapSize = count(mig, "max_bitmap_size", "migration.");
    if (maxBitmapSize !== undefined) migration.maxBitmapSize = maxBitmapSize;
  }

  return { maxMsgFds, maxDataXferSize, maxDmaMaps, pgsizes, writeMultiple, twinSocket, migration };
}

function checkCount(v: number, name: string): number {
  if (!Number.isSafeInteger(v) || v < 0)
    throw new RangeError(`${name} must be a non-negative integer, got ${v}`);
  return v;
}

/**
 * Compact JSON `{"capabilities":{...}}` with only the keys present in `c` (null twinSocket or
 * migration are left out), in the order max_msg_fds, max_data_xfer_size, pgsizes, max_dma_maps,
 * write_multiple, migration, twin_socket. Throws RangeError for a negative or fractional number.
 */
export function formatCapabilities(c: Partial<Capabilities>): string {
  const out: Json = {};
  if (c.maxMsgFds !== undefined) out.max_msg_fds = checkCount(c.maxMsgFds, "maxMsgFds");
  if (c.maxDataXferSize !== undefined)
    out.max_data_xfer_size = checkCount(c.maxDataXferSize, "maxDataXferSize");
  if (c.pgsizes !== undefined) out.pgsizes = checkCount(c.pgsizes, "pgsizes");
  if (c.maxDmaMaps !== undefined) out.max_dma_maps = checkCount(c.maxDmaMaps, "maxDmaMaps");
  if (c.writeMultiple !== undefined) out.write_multiple = c.writeMultiple === true;
  if (c.migration) {
    const m: Json = { pgsize: checkCount(c.migration.pgsize, "migration.pgsize") };
    if (c.migration.maxBitmapSize !== undefined) {
      m.max_bitmap_size = checkCount(c.migration.maxBitmapSize, "migration.maxBitmapSize");
    }
    out.migration = m;
  }
  if (c.twinSocket) {
    const t: Json = { supported: c.twinSocket.supported === true };
    if (c.twinSocket.fdIndex !== undefined)
      t.fd_index = checkCount(c.twinSocket.fdIndex, "twinSocket.fdIndex");
    out.twin_socket = t;
  }
  return JSON.stringify({ capabilities: out });
}
