// Seed messages for mutation: every client-to-server command found in the codec fixtures under
// test/fixtures/protocol/ (the QEMU 11.1 traces rebuilt byte for byte by a colleague's builder,
// and any other fixture file that carries `hex` messages), with the number of fds each carried.
// The loader walks any JSON shape, so fixture files added later are picked up without changes
// here. Whole traces are also kept in order, so a burst can replay a QEMU session with mutations.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export interface SeedMessage {
  /** The whole message, header included. */
  bytes: Uint8Array;
  /** fds that came with it in the trace (DMA_MAP of guest RAM carries one). */
  fds: number;
  /** Where it came from, for reports. */
  source: string;
}

export interface SeedSet {
  /** Every command seed, deduplicated. */
  messages: SeedMessage[];
  /** Client-to-server commands of each trace, in order (for replay bursts). */
  sessions: SeedMessage[][];
}

export const FIXTURE_DIR = fileURLToPath(new URL("../../test/fixtures/protocol/", import.meta.url));

function fromHex(text: string): Uint8Array | null {
  const clean = text.replace(/[\s_|]/g, "");
  if (clean.length < 32 || clean.length % 2 !== 0 || /[^0-9a-f]/i.test(clean)) return null;
  return Uint8Array.from(Buffer.from(clean, "hex"));
}

/** True when the bytes look like a client command: a whole message with type "command". */
function isCommand(bytes: Uint8Array, entry: Record<string, unknown>): boolean {
  if (entry.dir === "S>C") return false;
  const size = bytes[4]! | (bytes[5]! << 8) | (bytes[6]! << 16) | (bytes[7]! << 24);
  return size === bytes.length && (bytes[8]! & 0xf) === 0;
}

function collect(node: unknown, source: string, out: SeedMessage[]): void {
  if (Array.isArray(node)) {
    for (const item of node) collect(item, source, out);
    return;
  }
  if (node === null || typeof node !== "object") return;
  const entry = node as Record<string, unknown>;
  if (typeof entry.hex === "string") {
    const bytes = fromHex(entry.hex);
    if (bytes && isCommand(bytes, entry)) {
      const fds = typeof entry.fds === "number" ? entry.fds : 0;
      out.push({ bytes, fds, source: `${source}${typeof entry.line === "number" ? `:${entry.line}` : ""}` });
    }
    return;
  }
  for (const value of Object.values(entry)) collect(value, source, out);
}

/** Loads every fixture file; a missing or unreadable directory yields no seeds (not an error). */
export function loadSeeds(dir: string = FIXTURE_DIR): SeedSet {
  const sessions: SeedMessage[][] = [];
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(".json"));
  } catch {
    return { messages: [], sessions: [] };
  }
  for (const name of names.sort()) {
    const found: SeedMessage[] = [];
    try {
      collect(JSON.parse(readFileSync(join(dir, name), "utf8")), name, found);
    } catch {
      continue;
    }
    if (found.length > 0) sessions.push(found);
  }
  const seen = new Set<string>();
  const messages: SeedMessage[] = [];
  for (const m of sessions.flat()) {
    const key = `${Buffer.from(m.bytes.subarray(2)).toString("hex")}/${m.fds}`; // msg_id aside
    if (seen.has(key)) continue;
    seen.add(key);
    messages.push(m);
  }
  return { messages, sessions };
}
