// Trapped region accesses: REGION_READ/REGION_WRITE (each built in one buffer for its msg_id),
// posted writes (NO_REPLY), 32- and 64-bit little-endian accessors, REGION_WRITE_MULTI, and the
// registry of combining writers, which flush before any other message leaves so that order holds.

import {
  Command,
  decodeRegionReadReply,
  decodeRegionWriteMultiReply,
  Errno,
  encodeRegionReadMessage,
  encodeRegionWriteMessage,
  encodeRegionWriteMulti,
  HeaderFlag,
  type WriteMultiEntry,
} from "../../protocol/index.ts";
import { type ClientCore, ClientError } from "./client-core.ts";
import { CombiningWriter } from "./combining-writer.ts";
import type { RegionInfoResult } from "./device-info.ts";

export interface WriteOptions {
  /** Send with NO_REPLY: resolves at once, nothing comes back (not even an error). */
  posted?: boolean;
}

export async function regionRead(
  core: ClientCore,
  region: number,
  offset: number | bigint,
  count: number,
): Promise<Uint8Array> {
  const at = BigInt(offset);
  const r = await core.send(Command.REGION_READ, (msgId) =>
    encodeRegionReadMessage(msgId, { offset: at, region, count }),
  );
  if (count === 0) return new Uint8Array(0);
  const reply = decodeRegionReadReply(r.body);
  if (reply.count !== count)
    throw new ClientError(Command.REGION_READ, Errno.EINVAL, `asked ${count} bytes, got ${reply.count}`);
  return reply.data!;
}

export async function regionWrite(
  core: ClientCore,
  region: number,
  offset: number | bigint,
  data: Uint8Array,
  opts: WriteOptions = {},
): Promise<void> {
  const access = { offset: BigInt(offset), region, count: data.length, data };
  if (opts.posted) {
    core.post((msgId) => encodeRegionWriteMessage(msgId, HeaderFlag.COMMAND | HeaderFlag.NO_REPLY, access));
    return;
  }
  await core.send(Command.REGION_WRITE, (msgId) =>
    encodeRegionWriteMessage(msgId, HeaderFlag.COMMAND, access),
  );
}

export async function regionRead32(
  core: ClientCore,
  region: number,
  offset: number | bigint,
): Promise<number> {
  const d = await regionRead(core, region, offset, 4);
  return new DataView(d.buffer, d.byteOffset, 4).getUint32(0, true);
}

export async function regionWrite32(
  core: ClientCore,
  region: number,
  offset: number | bigint,
  value: number,
  opts: WriteOptions = {},
): Promise<void> {
  const d = new Uint8Array(4);
  new DataView(d.buffer).setUint32(0, value >>> 0, true);
  await regionWrite(core, region, offset, d, opts);
}

/** One 8-byte access (not two 4-byte ones): what a 64-bit register needs. */
export async function regionRead64(
  core: ClientCore,
  region: number,
  offset: number | bigint,
): Promise<bigint> {
  const d = await regionRead(core, region, offset, 8);
  return new DataView(d.buffer, d.byteOffset, 8).getBigUint64(0, true);
}

export async function regionWrite64(
  core: ClientCore,
  region: number,
  offset: number | bigint,
  value: bigint | number,
  opts: WriteOptions = {},
): Promise<void> {
  const v = BigInt(value);
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`${value} is not a 64-bit unsigned value`);
  const d = new Uint8Array(8);
  new DataView(d.buffer).setBigUint64(0, v, true);
  await regionWrite(core, region, offset, d, opts);
}

export async function writeMulti(
  core: ClientCore,
  entries: WriteMultiEntry[],
  opts: WriteOptions = {},
): Promise<bigint | null> {
  const body = encodeRegionWriteMulti(entries);
  if (opts.posted) {
    core.postCommand(Command.REGION_WRITE_MULTI, body);
    return null;
  }
  const r = await core.request(Command.REGION_WRITE_MULTI, body);
  return decodeRegionWriteMultiReply(r.body).wrCnt;
}

/** The client's combining writers: each flushes before any other message leaves. */
export class CombiningWriters {
  readonly #core: ClientCore;
  readonly #writers = new Set<CombiningWriter>();
  #sending = false;

  constructor(core: ClientCore) {
    this.#core = core;
    core.beforeSend = () => this.flush();
  }

  flush(): void {
    if (this.#sending || this.#writers.size === 0) return;
    for (const w of this.#writers) w.flush();
  }

  /** A writer for the region `info` describes, when it is WC or WB; a UC region, or one without
   * the cache capability, is refused (EINVAL): its stores must reach the device one by one. */
  create(info: RegionInfoResult, opts: { limit?: number } = {}): CombiningWriter {
    const region = info.index;
    if (info.cache?.cache !== "WC" && info.cache?.cache !== "WB") {
      throw new ClientError(
        Command.DEVICE_GET_REGION_INFO,
        Errno.EINVAL,
        `region ${region} is ${info.cache?.cache ?? "not described as WC or WB"}: its stores may not be combined`,
      );
    }
    const limit = Math.min(opts.limit ?? 4096, this.#core.serverCaps.maxDataXferSize);
    const w = new CombiningWriter(region, limit, (offset, data) => {
      this.#sending = true;
      try {
        void regionWrite(this.#core, region, offset, data, { posted: true });
      } finally {
        this.#sending = false;
      }
    });
    this.#writers.add(w);
    return w;
  }
}
