// The TypeScript vfio-user client: negotiate, inspect the device, touch its regions, map memory
// for its DMA, wire its interrupts to eventfds, reset it. Device authors use it to test a model
// without QEMU; the test suite uses it as its harness, including `sendRaw` for malformed input.
//
// Requests are matched to replies by msg_id, so several may be in flight. The server's own
// requests (DMA_READ/DMA_WRITE to memory mapped without an fd) are served from the client's
// buffers as they arrive, interleaved with our requests.
//
// OWNERSHIP: fds the client creates (memfds for DMA, eventfds for interrupts) are the client's and
// closed by `close()`; fds received in replies (region fds) are the caller's.

import { native, PollEvent } from "../../native/index.ts";
import {
  type CacheAttrName,
  type Capabilities,
  Command,
  commandName,
  DEFAULT_CAPABILITIES,
  type DeviceInfo,
  type DmaLayout,
  DmaMapFlag,
  DmaUnmapFlag,
  decodeDeviceFeature,
  decodeDeviceInfo,
  decodeDmaRead,
  decodeDmaUnmapReply,
  decodeDmaWrite,
  decodeIrqInfo,
  decodeMigDataReadReply,
  decodeRegionCacheCap,
  decodeRegionInfoReply,
  decodeRegionIoFdsReply,
  decodeRegionReadReply,
  decodeRegionWriteMultiReply,
  decodeVersion,
  Errno,
  encodeDeviceFeature,
  encodeDeviceInfo,
  encodeDmaMap,
  encodeDmaReadReply,
  encodeDmaUnmap,
  encodeDmaWriteReply,
  encodeErrorReply,
  encodeIrqInfo,
  encodeMessage,
  encodeMigDataRead,
  encodeMigDataWrite,
  encodeRegionInfo,
  encodeRegionIoFds,
  encodeRegionReadMessage,
  encodeRegionWriteMessage,
  encodeRegionWriteMulti,
  encodeSetIrqs,
  encodeVersion,
  errnoName,
  formatCapabilities,
  HeaderFlag,
  type IoFdEntry,
  type IrqInfo,
  IrqSetFlag,
  type MessageHeader,
  parseCapabilities,
  type RegionCacheInfo,
  type RegionCap,
  RegionCapId,
  type RegionInfo,
  VFU_REGION_INFO_CAP_CACHE,
  type WriteMultiEntry,
} from "../../protocol/index.ts";
import { VFU_REGION_TYPE, VfuRegionSubtype } from "../platform/region-type.ts";
import type { Connection, ReceivedFrame } from "../transport/connection.ts";
import { connectUnix } from "../transport/listener.ts";
import { VfuError } from "../util/errors.ts";
import { closeFds } from "../util/fds.ts";
import { CombiningWriter } from "./combining-writer.ts";

export interface ClientOptions {
  /** Fds we accept per message (told to the server in VERSION). */
  maxMsgFds?: number;
  /** Largest transfer we accept (told to the server in VERSION). */
  maxDataXferSize?: number;
  /** Per-request timeout in ms (default 5000, as QEMU). */
  timeoutMs?: number;
  /** Layout of the server's DMA_READ/DMA_WRITE we serve (default "spec"). */
  dmaLayout?: DmaLayout;
  /** Capabilities JSON sent in VERSION instead of the one built from the options. */
  versionJson?: string | null;
  /** Skip VERSION (to test what a server does with a client that never negotiates). */
  negotiate?: boolean;
}

export interface RegionInfoResult extends RegionInfo {
  caps: RegionCap[];
  /** The project's cache capability decoded (attribute of trapped accesses, mmap views), or
   * null when the server sent none (or a version this client does not know). */
  cache: RegionCacheInfo | null;
  /** The fd to mmap when the region is MMAP-capable. OWNERSHIP: the caller's. */
  fd: number | null;
}

/** Client memory the server reaches with DMA. */
export interface ClientMemory {
  iova: bigint;
  size: number;
  /** The client's view of the bytes. */
  bytes: Uint8Array;
  /** The memfd the server maps, or -1 for message-backed memory. */
  fd: number;
}

interface Pending {
  command: number;
  resolve(frame: ReceivedFrame): void;
  reject(err: Error): void;
  /** performance.now() after which the request times out */
  deadline: number;
  /** the rejection to use on timeout */
  timeout(): Error;
}

export class ClientError extends VfuError {
  readonly command: number;
  constructor(command: number, errno: number, detail?: string) {
    super(errno, `${commandName(command)} failed: ${errnoName(errno)}${detail ? ` (${detail})` : ""}`);
    this.name = "ClientError";
    this.command = command;
  }
}

export class VfioUserClient {
  readonly conn: Connection;
  serverCaps: Capabilities = DEFAULT_CAPABILITIES;
  readonly #opts: Required<Omit<ClientOptions, "versionJson" | "negotiate">> &
    Pick<ClientOptions, "versionJson">;
  readonly #pending = new Map<number, Pending>();
  readonly #memories: ClientMemory[] = [];
  readonly #ownedFds = new Set<number>();
  #nextId = 0;
  #sweeper: NodeJS.Timeout | null = null;
  #closed = false;
  #closeError: Error | null = null;
  /** Frames that arrived with no request waiting for them (raw tests read these). */
  readonly unexpected: ReceivedFrame[] = [];
  /** DMA requests from the server that we served, for tests and statistics. */
  dmaServed = { reads: 0, writes: 0, errors: 0 };
  readonly closedPromise: Promise<Error | null>;
  #resolveClosed!: (e: Error | null) => void;

  constructor(conn: Connection, opts: ClientOptions = {}) {
    this.conn = conn;
    this.#opts = {
      maxMsgFds: opts.maxMsgFds ?? 8,
      maxDataXferSize: opts.maxDataXferSize ?? 1024 * 1024,
      timeoutMs: opts.timeoutMs ?? 5000,
      dmaLayout: opts.dmaLayout ?? "spec",
      versionJson: opts.versionJson,
    };
    this.closedPromise = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    conn.setHandlers({
      onFrame: (f) => this.#onFrame(f),
      onClose: (err) => this.#onClose(err),
    });
  }

  /** Connect to a server's socket and negotiate. */
  static async connect(path: string, opts: ClientOptions = {}): Promise<VfioUserClient> {
    const conn = connectUnix(path, {
      maxMessageSize: (opts.maxDataXferSize ?? 1024 * 1024) + 64,
      maxRecvFds: opts.maxMsgFds ?? 8,
      maxQueuedBytes: 64 * 1024 * 1024,
      name: `client ${path}`,
    });
    return VfioUserClient.over(conn, opts);
  }

  /** Use an existing connection (an in-memory pair in tests) and negotiate. */
  static async over(conn: Connection, opts: ClientOptions = {}): Promise<VfioUserClient> {
    const client = new VfioUserClient(conn, opts);
    if (opts.negotiate !== false) {
      try {
        await client.negotiate();
      } catch (err) {
        client.close();
        throw err;
      }
    }
    return client;
  }

  get closed(): boolean {
    return this.#closed;
  }

  // ---- plumbing ------------------------------------------------------------------------------

  #allocId(): number {
    let id = this.#nextId;
    while (this.#pending.has(id)) id = (id + 1) & 0xffff;
    this.#nextId = (id + 1) & 0xffff;
    return id;
  }

  /** Send one command and wait for its reply. Rejects with ClientError on an error reply. */
  request(command: number, body: Uint8Array | null, fds: readonly number[] = []): Promise<ReceivedFrame> {
    const msgId = this.#allocId();
    return this.#send(
      msgId,
      command,
      encodeMessage({ msgId, command, flags: HeaderFlag.COMMAND }, body),
      fds,
    );
  }

  /** Send a command with NO_REPLY: nothing comes back, not even an error. */
  post(command: number, body: Uint8Array | null): void {
    this.#flushWriters();
    const msgId = this.#allocId();
    this.conn.send(encodeMessage({ msgId, command, flags: HeaderFlag.COMMAND | HeaderFlag.NO_REPLY }, body));
  }

  /** Send `message` and wait for the reply with `msgId`. `command` -1 marks a raw message:
   * its reply resolves whatever it holds, errors included. */
  #send(msgId: number, command: number, message: Uint8Array, fds: readonly number[]): Promise<ReceivedFrame> {
    if (this.#closed)
      return Promise.reject(
        this.#closeError ?? new ClientError(command, Errno.ENOTCONN, "connection closed"),
      );
    this.#flushWriters();
    const ms = this.#opts.timeoutMs;
    return new Promise((resolve, reject) => {
      this.#track(msgId, {
        command,
        resolve,
        reject,
        deadline: performance.now() + ms,
        timeout: () =>
          command === -1
            ? new Error(`no reply to raw message id=${msgId} within ${ms} ms`)
            : new ClientError(command, 110, `no reply within ${ms} ms`),
      });
      this.conn.send(message, fds);
    });
  }

  /** Send bytes exactly as given (malformed on purpose, fds attached). When `replyTo` is given,
   * wait for the reply with that msg_id and resolve with it, errors included (no rejection). */
  sendRaw(bytes: Uint8Array, fds: readonly number[] = [], replyTo?: number): Promise<ReceivedFrame | null> {
    if (replyTo === undefined) {
      this.conn.send(bytes, fds);
      return Promise.resolve(null);
    }
    return this.#send(replyTo, -1, bytes, fds);
  }

  /** Register a request waiting for its reply. Timeouts are found by one sweeping timer rather
   * than a timer per request (a timer per request costs more than the rest of a round trip);
   * a request therefore fails between `timeoutMs` and 1.25 × `timeoutMs` after it was sent. */
  #track(msgId: number, p: Pending): void {
    this.#pending.set(msgId, p);
    if (this.#sweeper) return;
    const period = Math.max(10, this.#opts.timeoutMs / 4);
    const sweep = () => {
      this.#sweeper = null;
      const now = performance.now();
      for (const [id, q] of this.#pending) {
        if (q.deadline <= now) {
          this.#pending.delete(id);
          q.reject(q.timeout());
        }
      }
      if (this.#pending.size > 0 && !this.#closed) this.#sweeper = setTimeout(sweep, period);
    };
    this.#sweeper = setTimeout(sweep, period);
  }

  #onFrame(frame: ReceivedFrame): void {
    const { header } = frame;
    if ((header.flags & HeaderFlag.TYPE_MASK) === HeaderFlag.COMMAND) {
      this.#serve(frame);
      return;
    }
    const p = this.#pending.get(header.msgId);
    if (!p) {
      this.unexpected.push(frame);
      return;
    }
    this.#pending.delete(header.msgId);
    if (p.command === -1) {
      p.resolve(frame);
      return;
    }
    if (header.command !== p.command) {
      closeFds(frame.fds);
      p.reject(
        new ClientError(p.command, Errno.EINVAL, `reply carried command ${commandName(header.command)}`),
      );
      return;
    }
    if (header.flags & HeaderFlag.ERROR) {
      closeFds(frame.fds);
      p.reject(new ClientError(p.command, header.error));
      return;
    }
    p.resolve(frame);
  }

  #onClose(err: Error | null): void {
    this.#closed = true;
    this.#closeError = err;
    if (this.#sweeper) clearTimeout(this.#sweeper);
    this.#sweeper = null;
    for (const [, p] of this.#pending) {
      p.reject(
        new ClientError(p.command, Errno.ENOTCONN, err ? err.message : "the server closed the connection"),
      );
    }
    this.#pending.clear();
    this.#releaseAll();
    this.#resolveClosed(err);
  }

  /** Serve the server's DMA_READ/DMA_WRITE from message-backed memory. */
  #serve(frame: ReceivedFrame): void {
    const { header } = frame;
    const hadFds = frame.fds.length > 0;
    closeFds(frame.fds);
    const replyError = (errno: number): void => {
      this.dmaServed.errors++;
      if (!(header.flags & HeaderFlag.NO_REPLY))
        this.conn.send(encodeErrorReply(header.msgId, header.command, errno));
    };
    if (hadFds) {
      replyError(Errno.EINVAL);
      return;
    }
    const layout = this.#opts.dmaLayout;
    try {
      if (header.command === Command.DMA_READ) {
        const req = decodeDmaRead(frame.body, layout);
        const mem = this.#findMessageMemory(req.addr, req.count);
        if (!mem) {
          replyError(Errno.EFAULT);
          return;
        }
        const at = Number(req.addr - mem.iova);
        const body = encodeDmaReadReply(
          { addr: req.addr, count: req.count, data: mem.bytes.subarray(at, at + req.count) },
          layout,
        );
        this.dmaServed.reads++;
        this.conn.send(
          encodeMessage({ msgId: header.msgId, command: header.command, flags: HeaderFlag.REPLY }, body),
        );
        return;
      }
      if (header.command === Command.DMA_WRITE) {
        const req = decodeDmaWrite(frame.body, layout);
        const mem = this.#findMessageMemory(req.addr, req.count);
        if (!mem) {
          replyError(Errno.EFAULT);
          return;
        }
        mem.bytes.set(req.data!, Number(req.addr - mem.iova));
        this.dmaServed.writes++;
        const body = encodeDmaWriteReply({ addr: req.addr, count: req.count }, layout);
        this.conn.send(
          encodeMessage({ msgId: header.msgId, command: header.command, flags: HeaderFlag.REPLY }, body),
        );
        return;
      }
      replyError(Errno.ENOSYS);
    } catch (err) {
      replyError((err as { errno?: number }).errno ?? Errno.EINVAL);
    }
  }

  #findMessageMemory(addr: bigint, count: number): ClientMemory | null {
    for (const m of this.#memories) {
      if (m.fd < 0 && addr >= m.iova && addr + BigInt(count) <= m.iova + BigInt(m.size)) return m;
    }
    return null;
  }

  // ---- negotiation and information ------------------------------------------------------------

  async negotiate(): Promise<Capabilities> {
    const json =
      this.#opts.versionJson !== undefined
        ? this.#opts.versionJson
        : formatCapabilities({
            maxMsgFds: this.#opts.maxMsgFds,
            maxDataXferSize: this.#opts.maxDataXferSize,
          });
    const reply = await this.request(Command.VERSION, encodeVersion({ major: 0, minor: 0, json }));
    const v = decodeVersion(reply.body);
    if (v.major !== 0)
      throw new ClientError(Command.VERSION, Errno.EINVAL, `server speaks major version ${v.major}`);
    this.serverCaps = parseCapabilities(v.json);
    return this.serverCaps;
  }

  async getDeviceInfo(): Promise<DeviceInfo> {
    const r = await this.request(
      Command.DEVICE_GET_INFO,
      encodeDeviceInfo({ argsz: 16, flags: 0, numRegions: 0, numIrqs: 0 }),
    );
    return decodeDeviceInfo(r.body);
  }

  /** Region info with its capabilities, retrying with a larger argsz as the protocol asks. */
  async getRegionInfo(index: number, argsz = 32): Promise<RegionInfoResult> {
    const ask = async (size: number) => {
      const r = await this.request(
        Command.DEVICE_GET_REGION_INFO,
        encodeRegionInfo({ argsz: size, flags: 0, index, capOffset: 0, size: 0n, offset: 0n }),
      );
      return { reply: decodeRegionInfoReply(r.body), fds: r.fds };
    };
    let { reply, fds } = await ask(argsz);
    if (reply.argsz > argsz) {
      closeFds(fds);
      ({ reply, fds } = await ask(reply.argsz));
    }
    if (fds.length > 1) closeFds(fds.splice(1));
    let cache: RegionCacheInfo | null = null;
    try {
      const raw = reply.caps.find((c) => c.id === VFU_REGION_INFO_CAP_CACHE);
      if (raw && "data" in raw) cache = decodeRegionCacheCap(raw);
    } catch (err) {
      closeFds(fds);
      throw err;
    }
    return { ...reply, cache, fd: fds[0] ?? null };
  }

  /** The first region whose info carries a TYPE capability {type, subtype}, or null. Fds offered
   * with the region infos looked at are closed (the result's `fd` is null). */
  async findRegionByType(type: number, subtype: number): Promise<RegionInfoResult | null> {
    const { numRegions } = await this.getDeviceInfo();
    for (let index = 0; index < numRegions; index++) {
      const info = await this.getRegionInfo(index);
      if (info.fd !== null) closeFds([info.fd]);
      const found = info.caps.some(
        (c) => c.id === RegionCapId.TYPE && "type" in c && c.type === type && c.subtype === subtype,
      );
      if (found) return { ...info, fd: null };
    }
    return null;
  }

  /** A platform device's device-tree source, read from the region typed {VFU_REGION_TYPE,
   * DEVICE_TREE} (src/platform/region-type.ts) in transfers the server accepts; null when the
   * device has no such region. */
  async readDeviceTree(): Promise<string | null> {
    const info = await this.findRegionByType(VFU_REGION_TYPE, VfuRegionSubtype.DEVICE_TREE);
    if (!info) return null;
    const size = Number(info.size);
    const text = new Uint8Array(size);
    const chunk = Math.max(1, Math.min(this.serverCaps.maxDataXferSize, this.#opts.maxDataXferSize));
    for (let at = 0; at < size; at += chunk) {
      text.set(await this.regionRead(info.index, at, Math.min(chunk, size - at)), at);
    }
    return new TextDecoder("utf-8", { fatal: true }).decode(text);
  }

  async getRegionIoFds(index: number, argsz = 16): Promise<{ entries: IoFdEntry[]; fds: number[] }> {
    const r = await this.request(
      Command.DEVICE_GET_REGION_IO_FDS,
      encodeRegionIoFds({ argsz, flags: 0, index, count: 0 }),
    );
    return { entries: decodeRegionIoFdsReply(r.body).entries, fds: r.fds };
  }

  async getIrqInfo(index: number): Promise<IrqInfo> {
    const r = await this.request(
      Command.DEVICE_GET_IRQ_INFO,
      encodeIrqInfo({ argsz: 16, flags: 0, index, count: 0 }),
    );
    return decodeIrqInfo(r.body);
  }

  // ---- region access -------------------------------------------------------------------------

  async regionRead(region: number, offset: number | bigint, count: number): Promise<Uint8Array> {
    const msgId = this.#allocId();
    const msg = encodeRegionReadMessage(msgId, { offset: BigInt(offset), region, count });
    const r = await this.#send(msgId, Command.REGION_READ, msg, []);
    if (count === 0) return new Uint8Array(0);
    const reply = decodeRegionReadReply(r.body);
    if (reply.count !== count)
      throw new ClientError(Command.REGION_READ, Errno.EINVAL, `asked ${count} bytes, got ${reply.count}`);
    return reply.data!;
  }

  /** Write; with `posted` the write goes with NO_REPLY and this resolves at once. */
  async regionWrite(
    region: number,
    offset: number | bigint,
    data: Uint8Array,
    opts: { posted?: boolean } = {},
  ): Promise<void> {
    const msgId = this.#allocId();
    const flags = HeaderFlag.COMMAND | (opts.posted ? HeaderFlag.NO_REPLY : 0);
    const msg = encodeRegionWriteMessage(msgId, flags, {
      offset: BigInt(offset),
      region,
      count: data.length,
      data,
    });
    if (opts.posted) {
      this.#flushWriters();
      this.conn.send(msg);
      return;
    }
    await this.#send(msgId, Command.REGION_WRITE, msg, []);
  }

  readonly #writers = new Set<CombiningWriter>();
  #sendingCombined = false;

  /** Everything a combining writer holds goes out before any other command, so order holds. */
  #flushWriters(): void {
    if (this.#sendingCombined || this.#writers.size === 0) return;
    for (const w of this.#writers) w.flush();
  }

  /** A writer that merges adjacent posted stores to `region` into one REGION_WRITE each (see
   * combining-writer.ts), for a region whose cache capability says WC or WB; a UC region, or one
   * without the capability, is refused (Errno.EINVAL): its stores must reach the device one by one.
   * `limit` (default 4096, at most the server's max_data_xfer_size) bounds one message's data. */
  async combiningWriter(region: number, opts: { limit?: number } = {}): Promise<CombiningWriter> {
    const info = await this.getRegionInfo(region);
    if (info.fd !== null) closeFds([info.fd]);
    if (info.cache?.cache !== "WC" && info.cache?.cache !== "WB") {
      throw new ClientError(
        Command.DEVICE_GET_REGION_INFO,
        Errno.EINVAL,
        `region ${region} is ${info.cache?.cache ?? "not described as WC or WB"}: its stores may not be combined`,
      );
    }
    const limit = Math.min(opts.limit ?? 4096, this.serverCaps.maxDataXferSize);
    const w = new CombiningWriter(region, limit, (offset, data) => {
      this.#sendingCombined = true;
      try {
        void this.regionWrite(region, offset, data, { posted: true });
      } finally {
        this.#sendingCombined = false;
      }
    });
    this.#writers.add(w);
    return w;
  }

  async regionRead32(region: number, offset: number): Promise<number> {
    const d = await this.regionRead(region, offset, 4);
    return new DataView(d.buffer, d.byteOffset, 4).getUint32(0, true);
  }

  async regionWrite32(
    region: number,
    offset: number,
    value: number,
    opts: { posted?: boolean } = {},
  ): Promise<void> {
    const d = new Uint8Array(4);
    new DataView(d.buffer).setUint32(0, value >>> 0, true);
    await this.regionWrite(region, offset, d, opts);
  }

  async writeMulti(entries: WriteMultiEntry[], opts: { posted?: boolean } = {}): Promise<bigint | null> {
    const body = encodeRegionWriteMulti(entries);
    if (opts.posted) {
      this.post(Command.REGION_WRITE_MULTI, body);
      return null;
    }
    const r = await this.request(Command.REGION_WRITE_MULTI, body);
    return decodeRegionWriteMultiReply(r.body).wrCnt;
  }

  /** mmap a region through the fd its region info offered. The mapping is the caller's
   * (release it with `native.unmap`); the fd is closed once mapped. */
  async mmapRegion(index: number): Promise<Uint8Array> {
    const info = await this.getRegionInfo(index);
    if (info.fd === null)
      throw new ClientError(Command.DEVICE_GET_REGION_INFO, Errno.EINVAL, `region ${index} offers no fd`);
    try {
      const ab = native.mmap(info.fd, Number(info.size), Number(info.offset), true);
      return new Uint8Array(ab);
    } finally {
      closeFds([info.fd]);
    }
  }

  /** mmap one view of a region: area `area` (default 0, in the SPARSE_MMAP cap's order) with the
   * cache attribute `cache` (default: the area's default view). The view's cookie is the fd
   * offset mapped. Without the cache capability only the default (a plain area) can be had. The
   * mapping is the caller's (release it with `native.unmap`); the fd is closed once mapped. */
  async mmapView(
    index: number,
    opts: { area?: number; cache?: CacheAttrName } = {},
  ): Promise<{ bytes: Uint8Array; offset: number; cache: CacheAttrName | null; cookie: bigint }> {
    const info = await this.getRegionInfo(index);
    const fail = (why: string): never => {
      if (info.fd !== null) closeFds([info.fd]);
      throw new ClientError(Command.DEVICE_GET_REGION_INFO, Errno.EINVAL, `region ${index}: ${why}`);
    };
    if (info.fd === null) return fail("offers no fd");
    const area = opts.area ?? 0;
    const sparse = info.caps.find((c) => c.id === RegionCapId.SPARSE_MMAP);
    const areas = sparse && "areas" in sparse ? sparse.areas : [{ offset: 0n, size: info.size }];
    const a = areas[area];
    if (!a) return fail(`has no mmap area ${area} (it has ${areas.length})`);
    let cookie = info.offset + a.offset;
    let cache: CacheAttrName | null = null;
    if (info.cache) {
      const views = info.cache.views.filter((v) => v.area === area);
      const v =
        opts.cache === undefined ? views.find((x) => x.isDefault) : views.find((x) => x.cache === opts.cache);
      if (!v) return fail(`area ${area} has no ${opts.cache ?? "default"} view`);
      cookie = v.cookie;
      cache = v.cache;
    } else if (opts.cache !== undefined) {
      return fail(`describes no mmap views (no cache capability), so no ${opts.cache} view`);
    }
    try {
      const ab = native.mmap(info.fd, Number(a.size), Number(cookie), true);
      return { bytes: new Uint8Array(ab), offset: Number(a.offset), cache, cookie };
    } finally {
      closeFds([info.fd]);
    }
  }

  // ---- DMA -----------------------------------------------------------------------------------

  async dmaMap(req: {
    iova: bigint;
    size: bigint;
    flags?: number;
    fd?: number;
    offset?: bigint;
  }): Promise<void> {
    const body = encodeDmaMap({
      argsz: 32,
      flags: req.flags ?? DmaMapFlag.READ | DmaMapFlag.WRITE,
      offset: req.offset ?? 0n,
      addr: req.iova,
      size: req.size,
    });
    await this.request(Command.DMA_MAP, body, req.fd !== undefined && req.fd >= 0 ? [req.fd] : []);
  }

  async dmaUnmap(iova: bigint, size: bigint, flags = 0): Promise<void> {
    const r = await this.request(Command.DMA_UNMAP, encodeDmaUnmap({ argsz: 24, flags, addr: iova, size }));
    decodeDmaUnmapReply(r.body);
    for (let i = this.#memories.length - 1; i >= 0; i--) {
      const m = this.#memories[i]!;
      if (flags & DmaUnmapFlag.ALL || (m.iova === iova && BigInt(m.size) === size)) {
        this.#memories.splice(i, 1);
        this.#release(m);
      }
    }
  }

  /** Create a memfd of `size` bytes, map it here and DMA_MAP it at `iova`: both sides then share
   * the bytes. */
  async mapMemory(
    iova: bigint,
    size: number,
    flags: number = DmaMapFlag.READ | DmaMapFlag.WRITE,
  ): Promise<ClientMemory> {
    const fd = native.memfdCreate("vfu-client-dma", size, true);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(native.mmap(fd, size, 0, true));
    } catch (err) {
      native.close(fd);
      throw err;
    }
    const mem: ClientMemory = { iova, size, bytes, fd };
    this.#ownedFds.add(fd);
    try {
      await this.dmaMap({ iova, size: BigInt(size), flags, fd });
    } catch (err) {
      this.#release(mem);
      throw err;
    }
    this.#memories.push(mem);
    return mem;
  }

  /** Map `size` bytes at `iova` without an fd: the server reaches them with DMA_READ/DMA_WRITE
   * messages that this client serves from `bytes`. */
  async mapMessageMemory(
    iova: bigint,
    size: number,
    flags: number = DmaMapFlag.READ | DmaMapFlag.WRITE,
  ): Promise<ClientMemory> {
    const mem: ClientMemory = { iova, size, bytes: new Uint8Array(size), fd: -1 };
    this.#memories.push(mem);
    try {
      await this.dmaMap({ iova, size: BigInt(size), flags });
    } catch (err) {
      this.#memories.splice(this.#memories.indexOf(mem), 1);
      throw err;
    }
    return mem;
  }

  #release(m: ClientMemory): void {
    if (m.fd >= 0) {
      native.unmap(m.bytes.buffer as ArrayBuffer);
      this.#ownedFds.delete(m.fd);
      closeFds([m.fd]);
    }
  }

  #releaseAll(): void {
    for (const m of this.#memories) this.#release(m);
    this.#memories.length = 0;
    closeFds([...this.#ownedFds]);
    this.#ownedFds.clear();
  }

  // ---- interrupts ----------------------------------------------------------------------------

  async setIrqs(req: {
    index: number;
    flags: number;
    start: number;
    count: number;
    data?: Uint8Array | null;
    fds?: readonly number[];
  }): Promise<void> {
    const dataLength = req.data ? req.data.length : 0;
    const body = encodeSetIrqs({
      argsz: 20 + dataLength,
      flags: req.flags,
      index: req.index,
      start: req.start,
      count: req.count,
      data: req.data ?? null,
    });
    await this.request(Command.DEVICE_SET_IRQS, body, req.fds ?? []);
  }

  /** Create `count` eventfds and bind them to vectors start.. of `index` (TRIGGER|EVENTFD). The
   * eventfds are the client's (closed by `close()`); read them with `waitForInterrupt`. */
  async enableInterrupts(index: number, start: number, count: number): Promise<number[]> {
    const fds: number[] = [];
    for (let i = 0; i < count; i++) {
      const fd = native.eventfd(0);
      fds.push(fd);
      this.#ownedFds.add(fd);
    }
    await this.setIrqs({
      index,
      flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER,
      start,
      count,
      fds,
    });
    return fds;
  }

  /** An eventfd owned by this client (closed by `close()`). */
  createEventfd(): number {
    const fd = native.eventfd(0);
    this.#ownedFds.add(fd);
    return fd;
  }

  /** Resolve with the eventfd's counter once it is signalled; reject after `timeoutMs`. */
  waitForInterrupt(fd: number, timeoutMs = 2000): Promise<number> {
    const now = native.eventfdRead(fd);
    if (now !== null) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const poller = new native.Poller(fd, () => {
        const v = native.eventfdRead(fd);
        if (v === null) return;
        clearTimeout(timer);
        poller.close();
        resolve(v);
      });
      const timer = setTimeout(() => {
        poller.close();
        reject(new Error(`no interrupt on eventfd ${fd} within ${timeoutMs} ms`));
      }, timeoutMs);
      poller.start(PollEvent.READABLE);
    });
  }

  /** Read and clear an eventfd's counter without waiting (0 when it was not signalled). */
  interruptCount(fd: number): number {
    return native.eventfdRead(fd) ?? 0;
  }

  // ---- reset, features, migration ------------------------------------------------------------

  async reset(): Promise<void> {
    await this.request(Command.DEVICE_RESET, null);
  }

  async deviceFeature(flags: number, data: Uint8Array = new Uint8Array(0), argsz = 8 + data.length) {
    const r = await this.request(Command.DEVICE_FEATURE, encodeDeviceFeature({ argsz, flags, data }));
    return decodeDeviceFeature(r.body);
  }

  async migDataRead(size: number): Promise<Uint8Array> {
    const r = await this.request(Command.MIG_DATA_READ, encodeMigDataRead({ argsz: 8 + size, size }));
    return decodeMigDataReadReply(r.body).data ?? new Uint8Array(0);
  }

  async migDataWrite(data: Uint8Array): Promise<void> {
    await this.request(
      Command.MIG_DATA_WRITE,
      encodeMigDataWrite({ argsz: 8 + data.length, size: data.length, data }),
    );
  }

  /** Close the connection and every fd and mapping the client created. */
  close(): void {
    if (this.#closed) return;
    this.conn.close();
  }

  /** Build a raw header+body for `sendRaw` (msg_id chosen by the caller). */
  static rawMessage(
    h: Partial<MessageHeader> & { command: number },
    body: Uint8Array | null = null,
  ): Uint8Array {
    const msg = encodeMessage(
      { msgId: h.msgId ?? 0, command: h.command, flags: h.flags ?? 0, error: h.error ?? 0 },
      body,
    );
    if (h.msgSize !== undefined) new DataView(msg.buffer, msg.byteOffset).setUint32(4, h.msgSize, true);
    return msg;
  }
}
