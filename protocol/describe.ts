// One line per vfio-user message, for logs and traces: the command, msg_id and the fields that say
// what the message does. Pure: bytes in, text out. The fields are read straight from the body
// (never through the strict decoders), so a malformed message is still described as far as its
// bytes go and the line says where the body ended; describing never throws.
//
//   REGION_WRITE id=12 no-reply region=0 offset=0x10 count=4 value=0x0000002a
//   REGION_READ reply id=13 region=0 offset=0x0 count=4 value=0x54494350
//   DMA_MAP id=3 iova=0xc0000 size=0x20000 prot=r- offset=0xc0000 fd=none
//   DEVICE_SET_IRQS id=40 index=2 start=0 count=1 action=trigger data=eventfd fds=17
//   REGION_READ reply id=14 error=EINVAL
//
// Values are the little-endian number the bytes hold, in hex with two digits a byte, for
// accesses of 8 bytes or less; longer accesses show their count alone.
import { readU16, readU32, readU64 } from "./bytes.ts";
import {
  Command,
  commandName,
  DeviceFlag,
  DmaMapFlag,
  DmaUnmapFlag,
  errnoName,
  FeatureFlag,
  HEADER_SIZE,
  HeaderFlag,
  IrqInfoFlag,
  IrqSetFlag,
  RegionFlag,
} from "./constants.ts";
import type { MessageHeader } from "./header.ts";
import type { DmaLayout } from "./messages/dma.ts";

export interface DescribeOptions {
  /** The fds that travel with the message, as numbers of the process that logs it. */
  fds?: readonly number[];
  /** Layout of DMA_READ/DMA_WRITE bodies (default "spec"). */
  dmaLayout?: DmaLayout;
}

/** Accesses up to this many bytes show their value. */
export const DESCRIBED_VALUE_BYTES = 8;
/** REGION_WRITE_MULTI entries listed before the rest are counted. */
export const DESCRIBED_MULTI_ENTRIES = 4;

/** One line for the message with `header` and `body` (the bytes after the 16-byte header). */
export function describeMessage(
  header: MessageHeader,
  body: Uint8Array,
  options: DescribeOptions = {},
): string {
  const type = header.flags & HeaderFlag.TYPE_MASK;
  const reply = type === HeaderFlag.REPLY;
  const words = [commandName(header.command)];
  if (reply) words.push("reply");
  else if (type !== HeaderFlag.COMMAND) words.push(`type=${type}`);
  words.push(`id=${header.msgId}`);
  if (!reply && header.flags & HeaderFlag.NO_REPLY) words.push("no-reply");
  if (reply && header.flags & HeaderFlag.ERROR) {
    words.push(`error=${errnoName(header.error)}`);
  } else {
    const r = new FieldReader(body);
    try {
      (reply ? describeReply : describeCommand)(header.command, r, words, options);
    } catch (err) {
      if (!(err instanceof ShortBody)) throw err;
      words.push(`(body ends at ${body.length} bytes)`);
    }
  }
  const fds = options.fds ?? [];
  if (fds.length > 0 && !words.some((w) => w.startsWith("fd=") || w.startsWith("fds="))) {
    words.push(`fds=${fds.join(",")}`);
  }
  return words.join(" ");
}

/** The message in `bytes` (header and body), as `describeMessage` puts it. */
export function describeMessageBytes(bytes: Uint8Array, options: DescribeOptions = {}): string {
  if (bytes.length < HEADER_SIZE) return `(${bytes.length} bytes: no whole header)`;
  const header = {
    msgId: readU16(bytes, 0),
    command: readU16(bytes, 2),
    msgSize: readU32(bytes, 4),
    flags: readU32(bytes, 8),
    error: readU32(bytes, 12),
  };
  return describeMessage(header, bytes.subarray(HEADER_SIZE), options);
}

class ShortBody extends Error {}

/** Reads fields in order; a field past the end of the body stops the description. */
class FieldReader {
  readonly body: Uint8Array;
  constructor(body: Uint8Array) {
    this.body = body;
  }
  #need(at: number, n: number): void {
    if (at + n > this.body.length) throw new ShortBody();
  }
  u16(at: number): number {
    this.#need(at, 2);
    return readU16(this.body, at);
  }
  u32(at: number): number {
    this.#need(at, 4);
    return readU32(this.body, at);
  }
  u64(at: number): bigint {
    this.#need(at, 8);
    return readU64(this.body, at);
  }
  /** The `count` data bytes at `at` as a value, when they are all there and few enough. */
  value(at: number, count: number): string | null {
    if (count === 0 || count > DESCRIBED_VALUE_BYTES) return null;
    this.#need(at, count);
    return leHex(this.body.subarray(at, at + count));
  }
}

const hex = (v: number | bigint): string => `0x${v.toString(16)}`;

/** Little-endian bytes as one hex number, two digits a byte. */
function leHex(bytes: Uint8Array): string {
  let s = "";
  for (let i = bytes.length - 1; i >= 0; i--) s += bytes[i]!.toString(16).padStart(2, "0");
  return `0x${s}`;
}

function flagNames(flags: number, names: Readonly<Record<string, number>>): string {
  const out: string[] = [];
  let rest = flags;
  for (const [name, bit] of Object.entries(names)) {
    if (flags & bit) {
      out.push(name.toLowerCase().replaceAll("_", "-"));
      rest &= ~bit;
    }
  }
  if (rest) out.push(hex(rest));
  return out.length ? out.join(",") : "0";
}

function irqAction(flags: number): string {
  const a = flags & IrqSetFlag.ACTION_TYPE_MASK;
  if (a === IrqSetFlag.ACTION_MASK) return "mask";
  if (a === IrqSetFlag.ACTION_UNMASK) return "unmask";
  if (a === IrqSetFlag.ACTION_TRIGGER) return "trigger";
  return hex(a);
}

function irqDataType(flags: number): string {
  const d = flags & IrqSetFlag.DATA_TYPE_MASK;
  if (d === IrqSetFlag.DATA_NONE) return "none";
  if (d === IrqSetFlag.DATA_BOOL) return "bool";
  if (d === IrqSetFlag.DATA_EVENTFD) return "eventfd";
  return hex(d);
}

function fdWord(options: DescribeOptions): string {
  const fds = options.fds ?? [];
  return `fd=${fds.length ? fds.join(",") : "none"}`;
}

function describeAccess(r: FieldReader, w: string[], withData: boolean): void {
  const offset = r.u64(0);
  const region = r.u32(8);
  const count = r.u32(12);
  w.push(`region=${region}`, `offset=${hex(offset)}`, `count=${count}`);
  if (withData) {
    const v = r.value(16, count);
    if (v !== null) w.push(`value=${v}`);
  }
}

/** DMA_READ/DMA_WRITE: addr, then a u64 count ("spec") or a u32 count ("qemu-10.1"), then data. */
function describeDmaAccess(r: FieldReader, w: string[], options: DescribeOptions, withData: boolean): void {
  const layout = options.dmaLayout ?? "spec";
  const addr = r.u64(0);
  const count = layout === "spec" ? r.u64(8) : BigInt(r.u32(8));
  w.push(`iova=${hex(addr)}`, `count=${count}`);
  if (withData && count <= BigInt(DESCRIBED_VALUE_BYTES)) {
    const v = r.value(layout === "spec" ? 16 : 12, Number(count));
    if (v !== null) w.push(`value=${v}`);
  }
}

function describeCommand(command: number, r: FieldReader, w: string[], options: DescribeOptions): void {
  switch (command) {
    case Command.VERSION: {
      w.push(`version=${r.u16(0)}.${r.u16(2)}`);
      const json = r.body.subarray(4, r.body.length - (r.body.at(-1) === 0 ? 1 : 0));
      if (json.length > 0) w.push(`caps=${new TextDecoder().decode(json)}`);
      return;
    }
    case Command.DMA_MAP: {
      const flags = r.u32(4);
      const offset = r.u64(8);
      const addr = r.u64(16);
      const size = r.u64(24);
      const prot = `${flags & DmaMapFlag.READ ? "r" : "-"}${flags & DmaMapFlag.WRITE ? "w" : "-"}`;
      const other = flags & ~(DmaMapFlag.READ | DmaMapFlag.WRITE);
      w.push(`iova=${hex(addr)}`, `size=${hex(size)}`, `prot=${prot}${other ? `+${hex(other)}` : ""}`);
      w.push(`offset=${hex(offset)}`, fdWord(options));
      return;
    }
    case Command.DMA_UNMAP: {
      const flags = r.u32(4);
      w.push(`iova=${hex(r.u64(8))}`, `size=${hex(r.u64(16))}`);
      if (flags) w.push(`flags=${flagNames(flags, DmaUnmapFlag)}`);
      return;
    }
    case Command.DEVICE_GET_INFO:
      w.push(`argsz=${r.u32(0)}`);
      return;
    case Command.DEVICE_GET_REGION_INFO:
      w.push(`region=${r.u32(8)}`, `argsz=${r.u32(0)}`);
      return;
    case Command.DEVICE_GET_REGION_IO_FDS:
      w.push(`region=${r.u32(8)}`, `argsz=${r.u32(0)}`);
      return;
    case Command.DEVICE_GET_IRQ_INFO:
      w.push(`index=${r.u32(8)}`);
      return;
    case Command.DEVICE_SET_IRQS: {
      const flags = r.u32(4);
      const index = r.u32(8);
      const start = r.u32(12);
      const count = r.u32(16);
      w.push(`index=${index}`, `start=${start}`, `count=${count}`);
      w.push(`action=${irqAction(flags)}`, `data=${irqDataType(flags)}`);
      if ((flags & IrqSetFlag.DATA_TYPE_MASK) === IrqSetFlag.DATA_BOOL) {
        const bools = r.body.subarray(20, 20 + Math.min(count, DESCRIBED_VALUE_BYTES * 8));
        w.push(`bools=${[...bools].join("")}${count > bools.length ? "…" : ""}`);
      }
      if ((options.fds ?? []).length > 0) w.push(`fds=${options.fds!.join(",")}`);
      return;
    }
    case Command.REGION_READ:
      describeAccess(r, w, false);
      return;
    case Command.REGION_WRITE:
      describeAccess(r, w, true);
      return;
    case Command.DMA_READ:
      describeDmaAccess(r, w, options, false);
      return;
    case Command.DMA_WRITE:
      describeDmaAccess(r, w, options, true);
      return;
    case Command.DEVICE_RESET:
      return;
    case Command.REGION_WRITE_MULTI: {
      const n = r.u64(0);
      w.push(`writes=${n}`);
      const listed = Math.min(Number(n), DESCRIBED_MULTI_ENTRIES);
      for (let i = 0; i < listed; i++) {
        const at = 8 + 24 * i;
        const offset = r.u64(at);
        const region = r.u32(at + 8);
        const count = r.u32(at + 12);
        const v = count <= DESCRIBED_VALUE_BYTES ? r.value(at + 16, count) : null;
        w.push(`[region=${region} offset=${hex(offset)} count=${count}${v === null ? "" : ` value=${v}`}]`);
      }
      if (n > BigInt(listed)) w.push(`+${n - BigInt(listed)} more`);
      return;
    }
    case Command.DEVICE_FEATURE:
      describeFeature(r, w);
      return;
    case Command.MIG_DATA_READ:
    case Command.MIG_DATA_WRITE:
      w.push(`size=${r.u32(4)}`);
      return;
    default:
      w.push(`bytes=${r.body.length}`);
  }
}

function describeFeature(r: FieldReader, w: string[]): void {
  const flags = r.u32(4);
  const ops = [
    flags & FeatureFlag.GET ? "get" : "",
    flags & FeatureFlag.SET ? "set" : "",
    flags & FeatureFlag.PROBE ? "probe" : "",
  ].filter(Boolean);
  w.push(`feature=${flags & FeatureFlag.INDEX_MASK}`, `op=${ops.join(",") || "none"}`);
}

function describeReply(command: number, r: FieldReader, w: string[], options: DescribeOptions): void {
  switch (command) {
    case Command.VERSION:
      describeCommand(command, r, w, options);
      return;
    case Command.DEVICE_GET_INFO:
      w.push(`flags=${flagNames(r.u32(4), DeviceFlag)}`, `regions=${r.u32(8)}`, `irqs=${r.u32(12)}`);
      return;
    case Command.DEVICE_GET_REGION_INFO:
      w.push(`region=${r.u32(8)}`, `size=${hex(r.u64(16))}`, `flags=${flagNames(r.u32(4), RegionFlag)}`);
      w.push(`offset=${hex(r.u64(24))}`);
      if ((options.fds ?? []).length > 0) w.push(fdWord(options));
      return;
    case Command.DEVICE_GET_REGION_IO_FDS:
      w.push(`region=${r.u32(8)}`, `entries=${r.u32(12)}`);
      return;
    case Command.DEVICE_GET_IRQ_INFO:
      w.push(`index=${r.u32(8)}`, `count=${r.u32(12)}`, `flags=${flagNames(r.u32(4), IrqInfoFlag)}`);
      return;
    case Command.REGION_READ:
      describeAccess(r, w, true);
      return;
    case Command.REGION_WRITE:
      describeAccess(r, w, false);
      return;
    case Command.DMA_READ:
      describeDmaAccess(r, w, options, true);
      return;
    case Command.DMA_WRITE:
      if (r.body.length > 0) describeDmaAccess(r, w, options, false);
      return;
    case Command.REGION_WRITE_MULTI:
      w.push(`written=${r.u64(0)}`);
      return;
    case Command.DEVICE_FEATURE:
      if (r.body.length > 0) describeFeature(r, w);
      return;
    case Command.MIG_DATA_READ:
      w.push(`size=${r.u32(4)}`);
      return;
    default:
      // DMA_MAP, DMA_UNMAP, SET_IRQS, DEVICE_RESET and MIG_DATA_WRITE replies carry nothing to
      // describe (a DMA_UNMAP with a dirty bitmap echoes its request).
      if (r.body.length > 0) w.push(`bytes=${r.body.length}`);
  }
}
