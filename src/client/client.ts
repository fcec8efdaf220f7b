// The TypeScript vfio-user client: negotiate, inspect the device, touch its regions, map memory
// for its DMA, wire its interrupts to eventfds, reset it, and drive a PCI function's config space
// as a driver would. Device authors use it to test a model without QEMU; the test suite uses it as
// its harness, including `sendRaw` for malformed input.
//
// This class is the one public face; the work is done by one module per concern over a shared
// ClientCore (client-core.ts): device-info, region-access, region-mapping, dma-memory, interrupts,
// device-state, pci-config and msi. Requests are matched to replies by msg_id through the request
// engine (src/transport/request-engine.ts), so several may be in flight; the server's own requests
// (DMA_READ/DMA_WRITE to memory mapped without an fd) are served as they arrive.
//
// OWNERSHIP: fds and mappings the client creates (memfds for DMA, eventfds for interrupts, region
// mappings) are the client's and released by `close()`; fds received in replies (a region's fd
// from `getRegionInfo`) are the caller's.

import {
  type CacheAttrName,
  type Capabilities,
  Command,
  type DeviceInfo,
  decodeVersion,
  Errno,
  encodeMessage,
  encodeVersion,
  formatCapabilities,
  HeaderFlag,
  type IoFdEntry,
  type IrqInfo,
  type MessageHeader,
  PciCommand,
  parseCapabilities,
  type WriteMultiEntry,
} from "../../protocol/index.ts";
import type { Connection, ReceivedFrame } from "../transport/connection.ts";
import { connectUnix } from "../transport/listener.ts";
import { closeFds } from "../util/fds.ts";
import { ClientCore, ClientDefaults, ClientError, type ClientOptions } from "./client-core.ts";
import type { CombiningWriter } from "./combining-writer.ts";
import type { RegionInfoResult } from "./device-info.ts";
import * as info from "./device-info.ts";
import * as state from "./device-state.ts";
import { ClientDma, type ClientMemory, type DmaMapRequest } from "./dma-memory.ts";
import type { SetIrqsRequest } from "./interrupts.ts";
import * as irq from "./interrupts.ts";
import { enableMsi, enableMsix, type MsiVectors } from "./msi.ts";
import type { BarSizing, PciCapability } from "./pci-config.ts";
import * as pci from "./pci-config.ts";
import * as access from "./region-access.ts";
import { CombiningWriters, type WriteOptions } from "./region-access.ts";
import { type RegionMapping, RegionMappings } from "./region-mapping.ts";

export { ClientDefaults, ClientError, type ClientOptions } from "./client-core.ts";
export type { RegionInfoResult } from "./device-info.ts";
export type { ClientMemory, DmaMapRequest } from "./dma-memory.ts";
export type { MsiVectors } from "./msi.ts";
export type { BarKind, BarSizing, PciCapability } from "./pci-config.ts";
export { RegionMapping } from "./region-mapping.ts";

export class VfioUserClient {
  readonly conn: Connection;
  readonly #core: ClientCore;
  readonly #dma: ClientDma;
  readonly #writers: CombiningWriters;
  readonly #mappings = new RegionMappings();
  #closed = false;
  /** The most recent replies that arrived with no request waiting for them (raw tests read
   * these; at most ClientDefaults.keptUnexpectedReplies, their fds closed). */
  readonly unexpected: ReceivedFrame[] = [];
  readonly closedPromise: Promise<Error | null>;
  #resolveClosed!: (e: Error | null) => void;

  constructor(conn: Connection, opts: ClientOptions = {}) {
    this.conn = conn;
    this.#core = new ClientCore(conn, opts, (frame) => {
      this.unexpected.push(frame);
      if (this.unexpected.length > ClientDefaults.keptUnexpectedReplies) this.unexpected.shift();
    });
    this.#dma = new ClientDma(this.#core);
    this.#writers = new CombiningWriters(this.#core);
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
      maxMessageSize: (opts.maxDataXferSize ?? ClientDefaults.maxDataXferSize) + 64,
      maxRecvFds: opts.maxMsgFds ?? ClientDefaults.maxMsgFds,
      maxQueuedBytes: ClientDefaults.maxQueuedBytes,
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

  /** The server's capabilities (defaults until VERSION is negotiated). */
  get serverCaps(): Capabilities {
    return this.#core.serverCaps;
  }

  /** Requests sent, replies, timeouts and unexpected replies so far. */
  get stats(): { sent: number; replies: number; timeouts: number; unexpected: number } {
    return this.#core.requests.stats;
  }

  /** DMA requests from the server that we served, for tests and statistics. */
  get dmaServed(): { reads: number; writes: number; errors: number } {
    return this.#dma.served;
  }

  #onFrame(frame: ReceivedFrame): void {
    if ((frame.header.flags & HeaderFlag.TYPE_MASK) === HeaderFlag.COMMAND) this.#dma.serve(frame);
    else this.#core.requests.handleReply(frame);
  }

  #onClose(err: Error | null): void {
    this.#closed = true;
    this.#core.requests.close(err ? err.message : "the server closed the connection");
    this.#mappings.unmapAll();
    this.#dma.releaseAll();
    this.#core.closeOwned();
    this.#resolveClosed(err);
  }

  // ---- messages ------------------------------------------------------------------------------

  /** Send one command and wait for its reply. Rejects with ClientError on an error reply. Fds in
   * the reply are the caller's where the protocol puts them (a region's fd, ioeventfds). */
  request(command: number, body: Uint8Array | null, fds: readonly number[] = []): Promise<ReceivedFrame> {
    return this.#core.request(command, body, fds);
  }

  /** Send a command with NO_REPLY: nothing comes back, not even an error. */
  post(command: number, body: Uint8Array | null): void {
    this.#core.postCommand(command, body);
  }

  /** Send bytes exactly as given (malformed on purpose, fds attached). When `replyTo` is given,
   * wait for the reply with that msg_id and resolve with it, errors included (no rejection). */
  sendRaw(bytes: Uint8Array, fds: readonly number[] = [], replyTo?: number): Promise<ReceivedFrame | null> {
    this.#writers.flush();
    if (replyTo === undefined) {
      this.conn.send(bytes, fds);
      return Promise.resolve(null);
    }
    return this.#core.requests.expect(replyTo, bytes, fds);
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

  // ---- negotiation and information -----------------------------------------------------------

  async negotiate(): Promise<Capabilities> {
    const { versionJson } = this.#core.options;
    const json =
      versionJson !== undefined
        ? versionJson
        : formatCapabilities({
            maxMsgFds: this.#core.options.maxMsgFds,
            maxDataXferSize: this.#core.options.maxDataXferSize,
          });
    const reply = await this.request(Command.VERSION, encodeVersion({ major: 0, minor: 0, json }));
    const v = decodeVersion(reply.body);
    if (v.major !== 0)
      throw new ClientError(Command.VERSION, Errno.EINVAL, `server speaks major version ${v.major}`);
    this.#core.serverCaps = parseCapabilities(v.json);
    return this.#core.serverCaps;
  }

  getDeviceInfo(): Promise<DeviceInfo> {
    return info.getDeviceInfo(this.#core);
  }

  /** Region info with its capabilities, retrying with a larger argsz as the protocol asks. The
   * result's `fd` (a region that may be mmapped) is the caller's. */
  getRegionInfo(index: number, argsz = 32): Promise<RegionInfoResult> {
    return info.getRegionInfo(this.#core, index, argsz);
  }

  /** The first region whose info carries a TYPE capability {type, subtype}, or null (fds closed). */
  findRegionByType(type: number, subtype: number): Promise<RegionInfoResult | null> {
    return info.findRegionByType(this.#core, type, subtype);
  }

  /** A platform device's device-tree source, or null when it has no device-tree region. */
  readDeviceTree(): Promise<string | null> {
    return info.readDeviceTree(this.#core);
  }

  getRegionIoFds(index: number, argsz = 16): Promise<{ entries: IoFdEntry[]; fds: number[] }> {
    return info.getRegionIoFds(this.#core, index, argsz);
  }

  getIrqInfo(index: number): Promise<IrqInfo> {
    return info.getIrqInfo(this.#core, index);
  }

  // ---- region access -------------------------------------------------------------------------

  regionRead(region: number, offset: number | bigint, count: number): Promise<Uint8Array> {
    return access.regionRead(this.#core, region, offset, count);
  }

  /** Write; with `posted` the write goes with NO_REPLY and this resolves at once. */
  regionWrite(
    region: number,
    offset: number | bigint,
    data: Uint8Array,
    opts: WriteOptions = {},
  ): Promise<void> {
    return access.regionWrite(this.#core, region, offset, data, opts);
  }

  regionRead32(region: number, offset: number | bigint): Promise<number> {
    return access.regionRead32(this.#core, region, offset);
  }

  regionWrite32(
    region: number,
    offset: number | bigint,
    value: number,
    opts: WriteOptions = {},
  ): Promise<void> {
    return access.regionWrite32(this.#core, region, offset, value, opts);
  }

  /** One 8-byte access, little-endian. */
  regionRead64(region: number, offset: number | bigint): Promise<bigint> {
    return access.regionRead64(this.#core, region, offset);
  }

  /** One 8-byte write, little-endian; `value` must fit in 64 unsigned bits (RangeError). */
  regionWrite64(
    region: number,
    offset: number | bigint,
    value: bigint | number,
    opts: WriteOptions = {},
  ): Promise<void> {
    return access.regionWrite64(this.#core, region, offset, value, opts);
  }

  writeMulti(entries: WriteMultiEntry[], opts: WriteOptions = {}): Promise<bigint | null> {
    return access.writeMulti(this.#core, entries, opts);
  }

  /** A writer that merges adjacent posted stores to `region` into one REGION_WRITE each (see
   * combining-writer.ts), for a region whose cache capability says WC or WB; a UC region, or one
   * without the capability, is refused (EINVAL): its stores must reach the device one by one.
   * `limit` (default 4096, at most the server's max_data_xfer_size) bounds one message's data. */
  async combiningWriter(region: number, opts: { limit?: number } = {}): Promise<CombiningWriter> {
    const r = await this.getRegionInfo(region);
    if (r.fd !== null) closeFds([r.fd]);
    return this.#writers.create(r, opts);
  }

  /** mmap a whole region through the fd its region info offered (closed once mapped). The
   * mapping is the client's until `unmap(bytes)` or `close()`. */
  async mmapRegion(index: number): Promise<Uint8Array> {
    return this.#mappings.mapRegion(await this.getRegionInfo(index)).bytes;
  }

  /** mmap one view of a region: area `area` (default 0, in the SPARSE_MMAP cap's order) with the
   * cache attribute `cache` (default: the area's default view). The view's cookie is the fd
   * offset mapped. Without the cache capability only the default (a plain area) can be had.
   * Release it with `mapping.unmap()` (or `close()`); the fd is closed once mapped. */
  async mmapView(index: number, opts: { area?: number; cache?: CacheAttrName } = {}): Promise<RegionMapping> {
    return this.#mappings.mapView(await this.getRegionInfo(index), opts);
  }

  /** Release a mapping from `mmapRegion` (its bytes) or `mmapView`; every view of its bytes then
   * reads as empty. False when it is not a live mapping of this client. */
  unmap(mapping: Uint8Array | RegionMapping): boolean {
    const m = mapping instanceof Uint8Array ? this.#mappings.find(mapping) : mapping;
    if (!m || m.unmapped) return false;
    m.unmap();
    return true;
  }

  // ---- DMA -----------------------------------------------------------------------------------

  dmaMap(req: DmaMapRequest): Promise<void> {
    return this.#dma.map(req);
  }

  /** DMA_UNMAP; client memory mapped at exactly that range (every one, with the ALL flag) is
   * released. */
  dmaUnmap(iova: bigint, size: bigint, flags = 0): Promise<void> {
    return this.#dma.unmap(iova, size, flags);
  }

  /** Create a memfd of `size` bytes, map it here and DMA_MAP it at `iova`: both sides then share
   * the bytes. */
  mapMemory(iova: bigint, size: number, flags?: number): Promise<ClientMemory> {
    return this.#dma.mapMemory(iova, size, flags);
  }

  /** Map `size` bytes at `iova` without an fd: the server reaches them with DMA_READ/DMA_WRITE
   * messages that this client serves from `bytes`. */
  mapMessageMemory(iova: bigint, size: number, flags?: number): Promise<ClientMemory> {
    return this.#dma.mapMessageMemory(iova, size, flags);
  }

  // ---- interrupts ----------------------------------------------------------------------------

  setIrqs(req: SetIrqsRequest): Promise<void> {
    return irq.setIrqs(this.#core, req);
  }

  /** Create `count` eventfds and bind them to vectors start.. of `index` (TRIGGER|EVENTFD, in
   * SET_IRQS of at most the server's max_msg_fds each). The eventfds are the client's (closed by
   * `close()`); read them with `waitForInterrupt`. */
  enableInterrupts(index: number, start: number, count: number): Promise<number[]> {
    return irq.enableInterrupts(this.#core, index, start, count);
  }

  /** An eventfd owned by this client (closed by `close()`). */
  createEventfd(): number {
    return this.#core.eventfd();
  }

  /** Resolve with the eventfd's counter once it is signalled; reject after `timeoutMs`. */
  waitForInterrupt(fd: number, timeoutMs = 2000): Promise<number> {
    return irq.waitForInterrupt(fd, timeoutMs);
  }

  /** Read and clear an eventfd's counter without waiting (0 when it was not signalled). */
  interruptCount(fd: number): number {
    return irq.interruptCount(fd);
  }

  // ---- PCI config space ----------------------------------------------------------------------

  /** A config register of 1, 2 or 4 bytes (little-endian). */
  configRead(offset: number, size: 1 | 2 | 4): Promise<number> {
    return pci.configRead(this.#core, offset, size);
  }

  configWrite(offset: number, size: 1 | 2 | 4, value: number): Promise<void> {
    return pci.configWrite(this.#core, offset, size, value);
  }

  /** The whole config space (256 or 4096 bytes). */
  readConfigSpace(): Promise<Uint8Array> {
    return pci.readConfigSpace(this.#core);
  }

  /** The standard capability list, then the PCI Express extended one: id, offset, version. */
  capabilities(): Promise<PciCapability[]> {
    return pci.listCapabilities(this.#core);
  }

  /** The first capability with `id` (an extended one with `extended`), or null. */
  async findCapability(id: number, opts: { extended?: boolean } = {}): Promise<PciCapability | null> {
    const extended = opts.extended === true;
    return (await this.capabilities()).find((c) => c.id === id && c.extended === extended) ?? null;
  }

  /** Size BAR `index` (0-5; 6 is the expansion ROM): all-ones written and read back with decode
   * off, then the BAR and the Command register restored. */
  sizeBar(index: number): Promise<BarSizing> {
    return pci.sizeBar(this.#core, index);
  }

  /** Every BAR (one entry per 64-bit pair) and the ROM, sized. */
  sizeBars(): Promise<BarSizing[]> {
    return pci.sizeBars(this.#core);
  }

  /** Set or clear Command bits; resolves with the Command register as it reads back. */
  updateCommand(set: number, clear = 0): Promise<number> {
    return pci.updateCommand(this.#core, set, clear);
  }

  /** Bus Master on or off (the device's DMA is gated on it). */
  setBusMaster(on: boolean): Promise<number> {
    return this.#commandBit(PciCommand.MASTER, on);
  }

  /** Memory Space decode on or off. */
  setMemoryDecode(on: boolean): Promise<number> {
    return this.#commandBit(PciCommand.MEMORY, on);
  }

  /** I/O Space decode on or off. */
  setIoDecode(on: boolean): Promise<number> {
    return this.#commandBit(PciCommand.IO, on);
  }

  #commandBit(bit: number, on: boolean): Promise<number> {
    return on ? this.updateCommand(bit) : this.updateCommand(0, bit);
  }

  /** Enable MSI with `vectors` (default: every capable one) bound to new eventfds. */
  enableMsi(opts: { vectors?: number; data?: number } = {}): Promise<MsiVectors> {
    return enableMsi(this.#core, opts);
  }

  /** Enable MSI-X with `vectors` (default: the whole table) bound to new eventfds, their table
   * entries programmed and unmasked. */
  enableMsix(opts: { vectors?: number } = {}): Promise<MsiVectors> {
    return enableMsix(this.#core, opts);
  }

  // ---- reset, features, migration ------------------------------------------------------------

  reset(): Promise<void> {
    return state.reset(this.#core);
  }

  deviceFeature(flags: number, data?: Uint8Array, argsz?: number) {
    return state.deviceFeature(this.#core, flags, data, argsz);
  }

  migDataRead(size: number): Promise<Uint8Array> {
    return state.migDataRead(this.#core, size);
  }

  migDataWrite(data: Uint8Array): Promise<void> {
    return state.migDataWrite(this.#core, data);
  }

  /** Close the connection and every fd and mapping the client created. */
  close(): void {
    if (this.#closed) return;
    this.conn.close();
  }
}
