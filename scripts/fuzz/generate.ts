// Message generation for the fuzzer: structure-aware messages for every command (valid, nearly
// valid, and boundary values), mutations of those and of the fixture seeds (bit flips, interesting
// values at aligned offsets, truncation, extension, command swaps, splices), raw random messages,
// unsolicited replies, and the stream breakers that end a connection on purpose.
//
// Every message except a stream breaker has a msg_size equal to its real length and header type
// bits 0 (command) or 1 (reply): those are the messages a session must answer (or ignore) and
// then go on. The harness writes the msg_id, so replies can be matched.
//
// Bodies are written with a local DataView writer, never with protocol/ encoders: the encoders
// refuse out-of-range values by design, and the point here is to send them.
import {
  Command,
  DmaMapFlag,
  DmaUnmapFlag,
  HEADER_SIZE,
  HeaderFlag,
  IrqSetFlag,
  U64_MAX,
} from "../../protocol/index.ts";
import { Limits } from "../../src/server/limits.ts";
import { type FdKind, randomFdKind } from "./fds.ts";
import type { Rng } from "./rng.ts";
import type { SeedSet } from "./seeds.ts";

export type StreamBreak = "short-size" | "huge-size" | "bad-type" | "truncated";

export interface FuzzMessage {
  /** The whole message; the harness overwrites bytes 0-1 (msg_id). */
  bytes: Uint8Array;
  fds: FdKind[];
  /** Which generator made it (for reports). */
  label: string;
  /** Set on messages that break the byte stream on purpose: the connection must close. */
  stream?: StreamBreak;
}

/** What the generator knows of the device under test (read from the model, not the wire). */
export interface DeviceShape {
  name: string;
  numRegions: number;
  regions: { index: number; size: number; accessSizes: readonly number[] | null }[];
  numIrqs: number;
  irqs: { index: number; count: number }[];
}

const MiB = 1024 * 1024;

const U32_INTERESTING = [
  0,
  1,
  2,
  3,
  4,
  7,
  8,
  15,
  16,
  17,
  20,
  23,
  24,
  31,
  32,
  33,
  40,
  48,
  63,
  64,
  127,
  128,
  255,
  256,
  4095,
  4096,
  4097,
  65535,
  65536,
  MiB - 1,
  MiB,
  MiB + 1,
  0x7fffffff,
  0x80000000,
  0xfffffffe,
  0xffffffff,
];
const U64_INTERESTING = [
  0n,
  1n,
  4095n,
  4096n,
  0xfffff000n,
  0xffffffffn,
  1n << 32n,
  1n << 52n,
  1n << 53n,
  (1n << 63n) - 1n,
  1n << 63n,
  U64_MAX - 4095n,
  U64_MAX - 1n,
  U64_MAX,
];

class Writer {
  readonly bytes: Uint8Array;
  readonly #view: DataView;
  #at = 0;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.#view = new DataView(this.bytes.buffer);
  }
  u16(v: number): this {
    this.#view.setUint16(this.#at, v & 0xffff, true);
    this.#at += 2;
    return this;
  }
  u32(v: number): this {
    this.#view.setUint32(this.#at, v >>> 0, true);
    this.#at += 4;
    return this;
  }
  u64(v: bigint): this {
    this.#view.setBigUint64(this.#at, BigInt.asUintN(64, v), true);
    this.#at += 8;
    return this;
  }
  raw(b: Uint8Array): this {
    this.bytes.set(b, this.#at);
    this.#at += b.length;
    return this;
  }
}

/** header + body with msg_size = real length. */
export function message(command: number, flags: number, body: Uint8Array, error = 0): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + body.length);
  const v = new DataView(out.buffer);
  v.setUint16(2, command & 0xffff, true);
  v.setUint32(4, out.length, true);
  v.setUint32(8, flags >>> 0, true);
  v.setUint32(12, error >>> 0, true);
  out.set(body, HEADER_SIZE);
  return out;
}

/** Overwrite msg_size with the real length and force the type bits to command or reply. */
function fixHeader(bytes: Uint8Array, keepType: boolean): Uint8Array {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  v.setUint32(4, bytes.length, true);
  const flags = v.getUint32(8, true);
  const type = flags & HeaderFlag.TYPE_MASK;
  if (!keepType || type > HeaderFlag.REPLY) v.setUint32(8, (flags & ~HeaderFlag.TYPE_MASK) >>> 0, true);
  return bytes;
}

/** A message over the server's size limit breaks the stream; outside `breaker()` cut it down. */
function capSize(m: FuzzMessage): FuzzMessage {
  if (m.bytes.length > Limits.maxMessageSize)
    m.bytes = fixHeader(m.bytes.slice(0, Limits.maxMessageSize), true);
  return m;
}

export interface GeneratorState {
  /** DMA maps this generator asked for (hints for unmaps and DMA addresses; the server may have
   * refused some). */
  maps: { iova: bigint; size: bigint }[];
}

export class Generator {
  readonly #rng: Rng;
  readonly #seeds: SeedSet;
  readonly #shape: DeviceShape;
  readonly state: GeneratorState = { maps: [] };

  constructor(rng: Rng, seeds: SeedSet, shape: DeviceShape) {
    this.#rng = rng;
    this.#seeds = seeds;
    this.#shape = shape;
  }

  // ---- value pickers ---------------------------------------------------------------------------

  #u32(): number {
    const r = this.#rng;
    return r.weighted<() => number>([
      [6, () => r.pick(U32_INTERESTING)],
      [2, () => r.u32()],
      [2, () => r.int(64)],
    ])();
  }

  #u64(): bigint {
    const r = this.#rng;
    return r.weighted<() => bigint>([
      [5, () => r.pick(U64_INTERESTING)],
      [2, () => r.u64()],
      [2, () => BigInt(r.int(1 << 20)) * 4096n],
    ])();
  }

  /** Header flags of a command: mostly plain, sometimes NO_REPLY, a reply type or stray bits. */
  #flags(noReplyChance = 0.08): number {
    const r = this.#rng;
    let f: number = HeaderFlag.COMMAND;
    if (r.chance(noReplyChance)) f |= HeaderFlag.NO_REPLY;
    if (r.chance(0.02)) f |= HeaderFlag.ERROR;
    if (r.chance(0.02)) f |= 1 << r.range(6, 31);
    return f >>> 0;
  }

  #region(): { index: number; size: number; accessSizes: readonly number[] | null } {
    const r = this.#rng;
    const real = this.#shape.regions.filter((x) => x.size > 0);
    if (real.length > 0 && r.chance(0.88)) return r.pick(real);
    const index = r.pick([this.#shape.numRegions, this.#shape.numRegions + 1, 7, 8, 9, 0xffffffff, r.u32()]);
    return { index, size: 0, accessSizes: null };
  }

  /** An access inside (mostly) the region, of a width it decodes (mostly). */
  #access(region: { size: number; accessSizes: readonly number[] | null }): {
    offset: bigint;
    count: number;
  } {
    const r = this.#rng;
    const widths = region.accessSizes && region.accessSizes.length > 0 ? region.accessSizes : [1, 2, 4, 8];
    let count = r.weighted<() => number>([
      [20, () => r.pick(widths)],
      [2, () => r.pick([1, 2, 3, 4, 5, 8, 16])],
      [1, () => 0],
      [1, () => Math.max(1, region.size)],
      [1, () => r.int(Math.max(1, region.size) + 1)],
      [0.3, () => r.pick([MiB, MiB + 1, 0x7fffffff, 0xffffffff])],
    ])();
    if (count > 0xffffffff) count = 0xffffffff;
    const align = Math.max(1, Math.min(8, count & -count));
    let offset: bigint;
    if (region.size > 0 && r.chance(0.9)) {
      const slots = Math.max(
        1,
        Math.floor(Math.max(0, region.size - Math.min(count, region.size)) / align) + 1,
      );
      offset = BigInt(r.int(slots) * align);
    } else {
      offset = r.weighted<() => bigint>([
        [3, () => BigInt(region.size)],
        [2, () => BigInt(Math.max(0, region.size - 1))],
        [2, () => this.#u64()],
        [1, () => U64_MAX - BigInt(r.int(8))],
      ])();
    }
    return { offset, count };
  }

  /** Data for a register write: small numbers (commands, vector numbers), addresses the client
   * mapped (so device DMA hits real areas), or noise. */
  #data(count: number): Uint8Array {
    const r = this.#rng;
    if (count > 64) return r.chance(0.5) ? new Uint8Array(count) : r.bytes(count);
    const v = r.weighted<() => bigint>([
      [5, () => BigInt(r.int(4))],
      [2, () => BigInt(r.int(256))],
      [2, () => this.#mappedAddress()],
      [1, () => BigInt(r.pick([4096, 8192, 65536, 65537]))],
      [2, () => r.u64()],
      [1, () => BigInt(r.pick(U32_INTERESTING))],
    ])();
    const out = new Uint8Array(count);
    let x = v;
    for (let i = 0; i < Math.min(count, 8); i++) {
      out[i] = Number(x & 0xffn);
      x >>= 8n;
    }
    if (count > 8) out.set(r.bytes(count - 8), 8);
    return out;
  }

  #mappedAddress(): bigint {
    const maps = this.state.maps;
    if (maps.length === 0) return BigInt(this.#rng.int(64)) * 0x100000n;
    const m = this.#rng.pick(maps);
    const r = this.#rng;
    const addr = r.weighted<() => bigint>([
      [4, () => m.iova],
      [2, () => m.iova + BigInt(r.int(Number(m.size < 65536n ? m.size : 65536n)))],
      [1, () => m.iova + m.size - 1n],
      [1, () => m.iova >> 32n], // the high half, for a DMA_ADDR_HI-style register
    ])();
    return BigInt.asUintN(64, addr);
  }

  // ---- structured messages ---------------------------------------------------------------------

  /** A VERSION for negotiation: mostly valid JSON with caps we accept, sometimes not. */
  version(valid: boolean): FuzzMessage {
    const r = this.#rng;
    let json: string | null;
    let major = 0;
    if (valid) {
      const caps: Record<string, unknown> = {};
      if (r.chance(0.8)) caps.max_msg_fds = r.pick([0, 1, 8, 16, 1024]);
      if (r.chance(0.8)) caps.max_data_xfer_size = r.pick([512, 4096, 65536, MiB, 64 * MiB, 2 ** 40]);
      if (r.chance(0.3)) caps.pgsizes = 4096;
      if (r.chance(0.3)) caps.max_dma_maps = 65535;
      if (r.chance(0.3)) caps.write_multiple = r.chance(0.5);
      if (r.chance(0.3)) caps.migration = { pgsize: 4096, max_bitmap_size: 268435456 };
      if (r.chance(0.1)) caps.twin_socket = { supported: r.chance(0.5) };
      if (r.chance(0.1)) caps.something_new = [1, 2, { x: null }];
      json = r.chance(0.05) ? null : JSON.stringify({ capabilities: caps });
      if (r.chance(0.1)) json = "{}";
    } else {
      major = r.chance(0.3) ? r.range(1, 0xffff) : 0;
      json = r.pick([
        "not json",
        "[]",
        '{"capabilities": []}',
        '{"capabilities": {"max_msg_fds": -1}}',
        '{"capabilities": {"max_msg_fds": 1e300}}',
        '{"capabilities": {"max_msg_fds": "8"}}',
        '{"capabilities": {"max_msg_fds": 2000}}',
        '{"capabilities": {"max_data_xfer_size": 0}}',
        '{"capabilities": {"max_data_xfer_size": 1.5}}',
        '{"capabilities": {"write_multiple": 1}}',
        '{"capabilities": {"twin_socket": true}}',
        '{"capabilities": {"migration": 7}}',
        `${"[".repeat(5000)}${"]".repeat(5000)}`,
        '{"capabilities": {"__proto__": {"max_msg_fds": 1}}}',
        "",
      ]);
    }
    const text = json === null ? new Uint8Array(0) : new TextEncoder().encode(json);
    const noNul = !valid && r.chance(0.15);
    const body = new Writer(4 + text.length + (json === null || noNul ? 0 : 1))
      .u16(major)
      .u16(r.chance(0.9) ? 0 : r.int(0x10000))
      .raw(text).bytes;
    if (!valid && r.chance(0.1))
      return {
        bytes: message(Command.VERSION, 0, body.subarray(0, r.int(4))),
        fds: [],
        label: "version-short",
      };
    if (!valid && r.chance(0.1) && body.length > 8) body[6] = 0; // a NUL inside
    if (!valid && r.chance(0.1) && body.length > 8) body[5] = 0xff; // not UTF-8
    const fds = !valid && r.chance(0.1) ? [randomFdKind(r)] : [];
    return { bytes: message(Command.VERSION, 0, body), fds, label: valid ? "version" : "version-bad" };
  }

  /** A command that is not VERSION and wants a reply (to open a connection the wrong way). */
  notVersion(): FuzzMessage {
    for (;;) {
      const m = this.structured();
      const v = new DataView(m.bytes.buffer, m.bytes.byteOffset, m.bytes.length);
      if (v.getUint16(2, true) === Command.VERSION) continue;
      v.setUint32(8, v.getUint32(8, true) & ~(HeaderFlag.TYPE_MASK | HeaderFlag.NO_REPLY), true);
      return { ...m, label: `${m.label}(before VERSION)` };
    }
  }

  /** The question asked after every burst; its answer proves the session is alive. */
  probe(): FuzzMessage {
    const body = new Writer(16).u32(16).u32(0).u32(0).u32(0).bytes;
    return { bytes: message(Command.DEVICE_GET_INFO, 0, body), fds: [], label: "probe" };
  }

  #dmaMap(): FuzzMessage {
    const r = this.#rng;
    const argsz = r.weighted([
      [20, 32],
      [1, 0],
      [1, 31],
      [1, 33],
      [1, 0xffffffff],
    ] as const);
    const flags = r.weighted<() => number>([
      [10, () => DmaMapFlag.READ | DmaMapFlag.WRITE],
      [5, () => DmaMapFlag.READ],
      [1, () => DmaMapFlag.WRITE],
      [1, () => 0],
      [1, () => r.pick([4, 8, 0xc, 0x7, 0xffffffff])],
    ])();
    const size = r.weighted<() => bigint>([
      [8, () => 4096n],
      [4, () => 8192n],
      [4, () => 65536n],
      [2, () => 1n << 20n],
      [1, () => 0n],
      [1, () => r.pick([1n, 4095n, 4097n, U64_MAX, 1n << 63n, U64_MAX - 4095n])],
    ])();
    const iova = r.weighted<() => bigint>([
      [10, () => BigInt(r.int(256)) * 0x10000n],
      [3, () => (this.state.maps.length ? r.pick(this.state.maps).iova : 0n)],
      [1, () => U64_MAX - 4095n],
      [1, () => U64_MAX - size + 1n],
      [1, () => BigInt(r.int(1 << 30))],
      [1, () => this.#u64()],
    ])();
    const withFd = r.chance(0.45);
    const offset = withFd
      ? r.weighted<() => bigint>([
          [10, () => 0n],
          [2, () => 4096n],
          [1, () => 1n],
          [1, () => this.#u64()],
        ])()
      : r.chance(0.9)
        ? 0n
        : this.#u64();
    const fds: FdKind[] = [];
    if (withFd) {
      const need = offset + size;
      const fits = need > 0n && need <= 2n * BigInt(MiB) ? Number(need) : 4096;
      fds.push(r.chance(0.7) ? { kind: "memfd", size: fits, sealed: r.chance(0.9) } : randomFdKind(r, fits));
      if (r.chance(0.05)) fds.push(randomFdKind(r));
    }
    let body = new Writer(32).u32(argsz).u32(flags).u64(offset).u64(BigInt.asUintN(64, iova)).u64(size).bytes;
    if (r.chance(0.04)) body = this.#resize(body);
    if (flags & DmaMapFlag.READ && size > 0n && size < 1n << 32n && this.state.maps.length < 512) {
      this.state.maps.push({ iova: BigInt.asUintN(64, iova), size });
    }
    return { bytes: message(Command.DMA_MAP, this.#flags(0.03), body), fds, label: "dma-map" };
  }

  #dmaUnmap(): FuzzMessage {
    const r = this.#rng;
    const maps = this.state.maps;
    let flags = r.weighted([
      [20, 0],
      [3, DmaUnmapFlag.ALL],
      [1, DmaUnmapFlag.GET_DIRTY_BITMAP],
      [1, 3],
      [1, 0xfffffffc],
    ] as const) as number;
    let addr = 0n;
    let size = 0n;
    if (flags === DmaUnmapFlag.ALL) {
      if (r.chance(0.2)) addr = this.#u64();
      if (r.chance(0.2)) size = this.#u64();
      if (addr === 0n && size === 0n) maps.length = 0;
    } else if (maps.length > 0 && r.chance(0.7)) {
      const i = r.int(maps.length);
      const m = maps[i]!;
      addr = m.iova;
      size = m.size;
      if (r.chance(0.15))
        size += 4096n; // not exactly a map
      else maps.splice(i, 1);
    } else {
      addr = this.#u64();
      size = this.#u64();
      if (r.chance(0.1)) flags = r.u32();
    }
    const bitmap = (flags & DmaUnmapFlag.GET_DIRTY_BITMAP) !== 0;
    const argsz = r.weighted([
      [20, 24],
      [2, bitmap ? 40 : 24],
      [1, 0],
      [1, 23],
      [1, 0xffffffff],
    ] as const);
    const w = new Writer(bitmap ? 40 : 24).u32(argsz).u32(flags).u64(addr).u64(size);
    if (bitmap) w.u64(r.pick([4096n, 0n, U64_MAX])).u64(r.pick([0n, 8n, 1n << 40n]));
    let body = w.bytes;
    if (r.chance(0.04)) body = this.#resize(body);
    return { bytes: message(Command.DMA_UNMAP, this.#flags(0.03), body), fds: [], label: "dma-unmap" };
  }

  #infoLike(command: number, label: string, argszFixed: number, index: () => number): FuzzMessage {
    const r = this.#rng;
    const argsz = r.weighted<() => number>([
      [12, () => argszFixed],
      [2, () => r.pick([0, argszFixed - 1, argszFixed + 1, 48, 64, 4096, 0xffffffff])],
      [1, () => r.u32()],
    ])();
    const size = command === Command.DEVICE_GET_REGION_INFO ? 32 : 16;
    const w = new Writer(size)
      .u32(argsz)
      .u32(r.chance(0.9) ? 0 : this.#u32())
      .u32(index());
    w.u32(r.chance(0.9) ? 0 : this.#u32());
    if (size === 32) w.u64(r.chance(0.9) ? 0n : this.#u64()).u64(r.chance(0.9) ? 0n : this.#u64());
    let body = w.bytes;
    if (r.chance(0.05)) body = this.#resize(body);
    return {
      bytes: message(command, this.#flags(0.03), body),
      fds: r.chance(0.01) ? [randomFdKind(r)] : [],
      label,
    };
  }

  #regionIndex(): number {
    const r = this.#rng;
    if (this.#shape.numRegions > 0 && r.chance(0.85)) return r.int(this.#shape.numRegions);
    return r.pick([this.#shape.numRegions, 9, 100, 0xffffffff, r.u32()]);
  }

  #irqIndex(): number {
    const r = this.#rng;
    if (this.#shape.numIrqs > 0 && r.chance(0.85)) return r.int(this.#shape.numIrqs);
    return r.pick([this.#shape.numIrqs, 5, 0xffffffff, r.u32()]);
  }

  #setIrqs(): FuzzMessage {
    const r = this.#rng;
    const index = this.#irqIndex();
    const vectors = this.#shape.irqs.find((x) => x.index === index)?.count ?? 0;
    const data = r.weighted([
      [4, IrqSetFlag.DATA_EVENTFD],
      [3, IrqSetFlag.DATA_NONE],
      [2, IrqSetFlag.DATA_BOOL],
    ] as const);
    const action = r.weighted([
      [5, IrqSetFlag.ACTION_TRIGGER],
      [2, IrqSetFlag.ACTION_MASK],
      [2, IrqSetFlag.ACTION_UNMASK],
    ] as const);
    let flags: number = data | action;
    if (r.chance(0.07)) flags = r.chance(0.5) ? this.#u32() : r.int(0x40);
    let start = 0;
    let count = 0;
    r.weighted<() => void>([
      [
        6,
        () => {
          count = Math.max(1, vectors);
        },
      ],
      [
        4,
        () => {
          start = r.int(Math.max(1, vectors));
          count = r.range(1, Math.max(1, vectors - start));
        },
      ],
      [
        2,
        () => {
          start = 0;
          count = 0;
        },
      ],
      [
        1,
        () => {
          start = vectors;
          count = 1;
        },
      ],
      [
        1,
        () => {
          start = r.pick([1, 0xffffffff, this.#u32()]);
          count = r.pick([0xffffffff, this.#u32(), 2]);
        },
      ],
    ])();
    const fds: FdKind[] = [];
    if ((flags & IrqSetFlag.DATA_EVENTFD) !== 0 && r.chance(0.85) && count > 0) {
      const n = r.weighted<() => number>([
        [8, () => Math.min(count, 9)],
        [1, () => Math.max(0, Math.min(count, 9) - 1)],
        [1, () => r.range(0, 10)],
      ])();
      for (let i = 0; i < n; i++) fds.push(r.chance(0.9) ? { kind: "eventfd" } : randomFdKind(r));
    } else if (r.chance(0.03)) {
      fds.push(randomFdKind(r));
    }
    let boolBytes = 0;
    if ((flags & IrqSetFlag.DATA_TYPE_MASK) === IrqSetFlag.DATA_BOOL) {
      boolBytes = count <= 4096 ? count : 0;
      if (r.chance(0.05)) boolBytes = r.int(64);
    }
    const bools = new Uint8Array(boolBytes);
    for (let i = 0; i < boolBytes; i++)
      bools[i] = r.weighted([
        [6, 1],
        [3, 0],
        [1, r.int(256)],
      ] as const);
    const argsz = r.chance(0.9) ? 20 + boolBytes : this.#u32();
    let body = new Writer(20 + boolBytes)
      .u32(argsz)
      .u32(flags)
      .u32(index)
      .u32(start)
      .u32(count)
      .raw(bools).bytes;
    if (r.chance(0.03)) body = this.#resize(body);
    return { bytes: message(Command.DEVICE_SET_IRQS, this.#flags(0.05), body), fds, label: "set-irqs" };
  }

  #regionRead(): FuzzMessage {
    const r = this.#rng;
    const region = this.#region();
    const { offset, count } = this.#access(region);
    let body = new Writer(16).u64(offset).u32(region.index).u32(count).bytes;
    if (r.chance(0.03)) body = this.#resize(body);
    return { bytes: message(Command.REGION_READ, this.#flags(0.05), body), fds: [], label: "region-read" };
  }

  #regionWrite(): FuzzMessage {
    const r = this.#rng;
    const region = this.#region();
    const { offset } = this.#access(region);
    let { count } = this.#access(region);
    if (count > 64 * 1024 && !r.chance(0.05)) count = 8;
    // A count beyond any message size is declared but not sent: the body then disagrees with it.
    const data = this.#data(Math.min(count, MiB + 1));
    let body = new Writer(16 + data.length).u64(offset).u32(region.index).u32(count).raw(data).bytes;
    if (r.chance(0.03)) body = this.#resize(body);
    return { bytes: message(Command.REGION_WRITE, this.#flags(0.35), body), fds: [], label: "region-write" };
  }

  #writeMulti(): FuzzMessage {
    const r = this.#rng;
    const n = r.weighted<() => number>([
      [10, () => r.range(1, 8)],
      [1, () => 0],
      [1, () => r.range(100, 220)],
    ])();
    const w = new Writer(8 + 24 * n);
    const declared = r.chance(0.9) ? BigInt(n) : r.pick([BigInt(n + 1), 0n, U64_MAX, BigInt(n) - 1n]);
    w.u64(declared);
    for (let i = 0; i < n; i++) {
      const region = this.#region();
      const { offset, count } = this.#access(region);
      const c = count <= 8 ? count : r.chance(0.9) ? 4 : count;
      const data = new Uint8Array(8);
      data.set(this.#data(Math.min(8, c)));
      w.u64(offset).u32(region.index).u32(c).raw(data);
    }
    let body = w.bytes;
    if (r.chance(0.03)) body = this.#resize(body);
    return {
      bytes: message(Command.REGION_WRITE_MULTI, this.#flags(0.5), body),
      fds: [],
      label: "write-multi",
    };
  }

  #reset(): FuzzMessage {
    const r = this.#rng;
    const body = r.chance(0.93) ? new Uint8Array(0) : r.bytes(r.range(1, 24));
    return { bytes: message(Command.DEVICE_RESET, this.#flags(0.05), body), fds: [], label: "reset" };
  }

  #feature(): FuzzMessage {
    const r = this.#rng;
    const index = r.pick([0, 1, 2, 3, 6, 7, 8, 9, 0xffff]);
    const op = r.pick([1 << 16, 1 << 17, 1 << 18, 3 << 16, 5 << 16, 6 << 16, 7 << 16, 0, 1 << 19]);
    const data = r.bytes(r.pick([0, 4, 8, 16, 24, 40, r.int(100)]));
    const argsz = r.chance(0.7) ? 8 + data.length : this.#u32();
    const body = new Writer(8 + data.length)
      .u32(argsz)
      .u32(r.chance(0.9) ? index | op : r.u32())
      .raw(data).bytes;
    return { bytes: message(Command.DEVICE_FEATURE, this.#flags(0.05), body), fds: [], label: "feature" };
  }

  #migData(): FuzzMessage {
    const r = this.#rng;
    const write = r.chance(0.5);
    const size = r.pick([0, 1, 8, 4096, MiB, MiB + 1, 0xffffffff]);
    const data = write && size <= 4096 ? r.bytes(size) : new Uint8Array(0);
    const argsz = r.chance(0.7) ? 8 + size : this.#u32();
    const body = new Writer(8 + data.length).u32(argsz).u32(size).raw(data).bytes;
    return {
      bytes: message(write ? Command.MIG_DATA_WRITE : Command.MIG_DATA_READ, this.#flags(0.05), body),
      fds: [],
      label: "mig-data",
    };
  }

  #oddCommand(): FuzzMessage {
    const r = this.#rng;
    const command = r.pick([0, 11, 12, 14, 19, 20, 255, 0x7fff, 0xffff, r.int(0x10000)]);
    const body = r.bytes(r.pick([0, 8, 16, 32, r.int(128)]));
    return {
      bytes: message(command, this.#flags(0.05), body),
      fds: r.chance(0.05) ? [randomFdKind(r)] : [],
      label: "odd-command",
    };
  }

  /** A message of type "reply" the server never asked for (or a garbled answer to one it did). */
  #unsolicitedReply(): FuzzMessage {
    const r = this.#rng;
    const command = r.pick([Command.DMA_READ, Command.DMA_WRITE, Command.VERSION, r.int(0x10000)]);
    const flags = HeaderFlag.REPLY | (r.chance(0.3) ? HeaderFlag.ERROR : 0);
    const body = r.bytes(r.pick([0, 16, 32, r.int(64)]));
    return {
      bytes: message(command, flags, body, r.chance(0.3) ? r.u32() : 0),
      fds: r.chance(0.05) ? [randomFdKind(r)] : [],
      label: "unsolicited-reply",
    };
  }

  #randomMessage(): FuzzMessage {
    const r = this.#rng;
    const body = r.bytes(
      r.weighted<() => number>([
        [10, () => r.int(64)],
        [1, () => r.int(4096)],
      ])(),
    );
    const command = r.chance(0.7) ? r.range(1, 18) : r.int(0x10000);
    return { bytes: message(command, r.u32() & ~0xe, body, r.u32()), fds: [], label: "random" };
  }

  /** One structured message, picked by weight, within the message size limit. */
  structured(): FuzzMessage {
    return capSize(this.#structured());
  }

  #structured(): FuzzMessage {
    const r = this.#rng;
    return r.weighted<() => FuzzMessage>([
      [10, () => this.#dmaMap()],
      [7, () => this.#dmaUnmap()],
      [
        3,
        () =>
          this.#infoLike(Command.DEVICE_GET_INFO, "get-info", 16, () => (r.chance(0.9) ? 0 : this.#u32())),
      ],
      [5, () => this.#infoLike(Command.DEVICE_GET_REGION_INFO, "region-info", 32, () => this.#regionIndex())],
      [
        2,
        () =>
          this.#infoLike(Command.DEVICE_GET_REGION_IO_FDS, "region-io-fds", 16, () => this.#regionIndex()),
      ],
      [4, () => this.#infoLike(Command.DEVICE_GET_IRQ_INFO, "irq-info", 16, () => this.#irqIndex())],
      [10, () => this.#setIrqs()],
      [18, () => this.#regionRead()],
      [22, () => this.#regionWrite()],
      [4, () => this.#writeMulti()],
      [2, () => this.#reset()],
      [2, () => this.#feature()],
      [2, () => this.#migData()],
      [1, () => this.version(r.chance(0.5))],
      [1.5, () => this.#oddCommand()],
      [1.5, () => this.#unsolicitedReply()],
    ])();
  }

  // ---- mutation --------------------------------------------------------------------------------

  /** Truncate or extend a body. */
  #resize(body: Uint8Array): Uint8Array {
    const r = this.#rng;
    if (r.chance(0.5) && body.length > 0) return body.slice(0, r.int(body.length));
    const out = new Uint8Array(body.length + r.range(1, 40));
    out.set(body);
    out.set(r.bytes(out.length - body.length), body.length);
    return out;
  }

  /** 1-4 mutations of a whole message; msg_size and the type bits are repaired afterwards. */
  mutate(original: FuzzMessage): FuzzMessage {
    const r = this.#rng;
    let bytes = original.bytes.slice();
    let fds = original.fds;
    const rounds = r.range(1, 4);
    for (let i = 0; i < rounds; i++) {
      const bodyLength = bytes.length - HEADER_SIZE;
      r.weighted<() => void>([
        [
          4,
          () => {
            // flip bits anywhere past msg_id (msg_size is repaired below)
            for (let k = r.range(1, 8); k > 0; k--) {
              const at = r.range(2, bytes.length - 1);
              bytes[at]! ^= 1 << r.int(8);
            }
          },
        ],
        [
          4,
          () => {
            if (bodyLength < 4) return;
            const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
            const wide = bodyLength >= 8 && r.chance(0.5);
            const at =
              HEADER_SIZE +
              (wide ? r.int(Math.floor(bodyLength / 8)) * 8 : r.int(Math.floor(bodyLength / 4)) * 4);
            if (wide) v.setBigUint64(at, r.pick(U64_INTERESTING), true);
            else v.setUint32(at, r.pick(U32_INTERESTING), true);
          },
        ],
        [
          2,
          () => {
            const body = this.#resize(bytes.subarray(HEADER_SIZE));
            const out = new Uint8Array(HEADER_SIZE + body.length);
            out.set(bytes.subarray(0, HEADER_SIZE));
            out.set(body, HEADER_SIZE);
            bytes = out;
          },
        ],
        [
          1,
          () => {
            new DataView(bytes.buffer, bytes.byteOffset).setUint16(2, r.range(1, 18), true);
          },
        ],
        [
          1,
          () => {
            const v = new DataView(bytes.buffer, bytes.byteOffset);
            v.setUint32(8, r.pick([0, 0x10, 0x1, 0x11, 0x20, 0x30, r.u32() & ~0xe]), true);
          },
        ],
        [
          1,
          () => {
            if (this.#seeds.messages.length === 0) return;
            const other = r.pick(this.#seeds.messages).bytes;
            const cut = r.int(bytes.length - HEADER_SIZE + 1);
            const cut2 = HEADER_SIZE + r.int(other.length - HEADER_SIZE + 1);
            const out = new Uint8Array(HEADER_SIZE + cut + (other.length - cut2));
            out.set(bytes.subarray(0, HEADER_SIZE + cut));
            out.set(other.subarray(cut2), HEADER_SIZE + cut);
            bytes = out;
          },
        ],
        [
          0.5,
          () => {
            fds = fds.length > 0 && r.chance(0.5) ? [] : [randomFdKind(r)];
          },
        ],
      ])();
    }
    return { bytes: fixHeader(bytes, true), fds, label: `${original.label}~mut` };
  }

  /** A fixture seed with the fds its trace message carried. */
  seed(): FuzzMessage | null {
    const seeds = this.#seeds.messages;
    if (seeds.length === 0) return null;
    const s = this.#rng.pick(seeds);
    return { bytes: s.bytes.slice(), fds: this.#seedFds(s.bytes, s.fds), label: `seed(${s.source})` };
  }

  #seedFds(bytes: Uint8Array, n: number): FdKind[] {
    if (n === 0) return [];
    const command = bytes[2]! | (bytes[3]! << 8);
    const out: FdKind[] = [];
    for (let i = 0; i < n; i++) {
      if (command === Command.DMA_MAP && bytes.length >= 48) {
        const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
        const need = v.getBigUint64(24, true) + v.getBigUint64(40, true);
        // QEMU maps 512 MiB of guest RAM; a sealed memfd of that size costs no memory until used.
        out.push({ kind: "memfd", size: need <= 1n << 30n ? Number(need) : 4096, sealed: true });
      } else {
        out.push({ kind: "eventfd" });
      }
    }
    return out;
  }

  /** A window of a QEMU session, in order (a realistic burst to mutate lightly). */
  replay(max: number): FuzzMessage[] {
    const sessions = this.#seeds.sessions;
    if (sessions.length === 0) return [];
    const r = this.#rng;
    const s = r.pick(sessions).filter((m) => (m.bytes[2]! | (m.bytes[3]! << 8)) !== Command.VERSION);
    if (s.length === 0) return [];
    const start = r.int(s.length);
    const window = s.slice(start, start + r.range(1, max));
    return window.map((m) => {
      const msg: FuzzMessage = {
        bytes: m.bytes.slice(),
        fds: this.#seedFds(m.bytes, m.fds),
        label: "replay",
      };
      return r.chance(0.15) ? this.mutate(msg) : msg;
    });
  }

  /** The next message of a burst: never over the server's message size limit (a message over it
   * breaks the stream, which only `breaker()` does on purpose). */
  next(): FuzzMessage {
    return capSize(this.#next());
  }

  #next(): FuzzMessage {
    const r = this.#rng;
    return r.weighted<() => FuzzMessage>([
      [60, () => this.#structured()],
      [15, () => this.mutate(this.#structured())],
      [
        18,
        () => {
          const s = this.seed();
          if (!s) return this.#structured();
          return r.chance(0.8) ? this.mutate(s) : s;
        },
      ],
      [4, () => this.#randomMessage()],
    ])();
  }

  /** A message that breaks the stream on purpose (the server must close, not hang or leak). */
  breaker(): FuzzMessage {
    const r = this.#rng;
    const kind = r.pick<StreamBreak>(["short-size", "huge-size", "bad-type", "truncated"]);
    const base = this.#structured();
    const bytes = base.bytes.slice();
    const v = new DataView(bytes.buffer);
    switch (kind) {
      case "short-size":
        v.setUint32(4, r.int(16), true);
        break;
      case "huge-size":
        v.setUint32(4, r.pick([2 * MiB, 0x7fffffff, 0xffffffff, MiB + 65]), true);
        break;
      case "bad-type":
        v.setUint32(8, (v.getUint32(8, true) & ~0xf) | r.range(2, 15), true);
        break;
      case "truncated":
        // claims more than is sent; the client then stalls and leaves
        v.setUint32(4, bytes.length + r.range(1, 4096), true);
        break;
    }
    return { bytes, fds: base.fds, label: `break-${kind}`, stream: kind };
  }
}
