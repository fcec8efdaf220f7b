// What every part of the client shares: the connection, the request engine, the options, the
// server's capabilities and the fds the client owns. The parts (device-info, region-access,
// region-mapping, dma-memory, interrupts, device-state, pci-config, msi) work over a ClientCore;
// VfioUserClient (client.ts) is their one public face.
//
// Which replies may carry fds is the protocol's: a region's fd with DEVICE_GET_REGION_INFO, its
// ioeventfds with DEVICE_GET_REGION_IO_FDS; any other reply with fds is refused (request-engine.ts).
//
// OWNERSHIP: fds the client creates (memfds for DMA, eventfds for interrupts) are registered here
// and closed by `closeOwned()`; fds received in replies are the caller's.

import { native } from "../../native/index.ts";
import {
  type Capabilities,
  Command,
  DEFAULT_CAPABILITIES,
  type DmaLayout,
  encodeMessage,
  HeaderFlag,
} from "../../protocol/index.ts";
import type { Connection, ReceivedFrame } from "../transport/connection.ts";
import { RequestEngine, RequestError, RequestLimits } from "../transport/request-engine.ts";
import { closeFds } from "../util/fds.ts";

const MiB = 1024 * 1024;

/** The client's defaults, each with its reason. */
export const ClientDefaults = {
  /** Fds accepted per message, told to the server in VERSION: as many as the server's own
   * max_msg_fds (Limits.maxMsgFds), so SET_IRQS and DMA_MAP batches fit either way. */
  maxMsgFds: 8,
  /** Largest transfer accepted, told to the server in VERSION: QEMU's default, 1 MiB. */
  maxDataXferSize: 1 * MiB,
  /** Per-request timeout: the request engine's (QEMU's 5 s). */
  timeoutMs: RequestLimits.timeoutMs,
  /** Output queued for a server that does not read: generous, since a test may queue many posted
   * writes at once, yet bounded. */
  maxQueuedBytes: 64 * MiB,
  /** Unexpected replies kept in `client.unexpected` for a test to look at (the most recent ones;
   * `stats.unexpected` counts them all), so a server sending junk cannot grow the client. */
  keptUnexpectedReplies: 64,
} as const;

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

export type ResolvedClientOptions = Required<Omit<ClientOptions, "versionJson" | "negotiate">> &
  Pick<ClientOptions, "versionJson">;

export class ClientError extends RequestError {
  constructor(command: number, errno: number, detail?: string) {
    super(command, errno, detail);
    this.name = "ClientError";
  }
}

export class ClientCore {
  readonly conn: Connection;
  readonly options: ResolvedClientOptions;
  readonly requests: RequestEngine;
  serverCaps: Capabilities = DEFAULT_CAPABILITIES;
  /** Runs before any message leaves (combining writers flush there, so order holds). */
  beforeSend: () => void = () => {};
  readonly #owned = new Set<number>();

  constructor(conn: Connection, opts: ClientOptions, onUnexpected: (frame: ReceivedFrame) => void) {
    this.conn = conn;
    this.options = {
      maxMsgFds: opts.maxMsgFds ?? ClientDefaults.maxMsgFds,
      maxDataXferSize: opts.maxDataXferSize ?? ClientDefaults.maxDataXferSize,
      timeoutMs: opts.timeoutMs ?? ClientDefaults.timeoutMs,
      dmaLayout: opts.dmaLayout ?? "spec",
      versionJson: opts.versionJson,
    };
    this.requests = new RequestEngine(conn, {
      timeoutMs: this.options.timeoutMs,
      error: (command, errno, detail) => new ClientError(command, errno, detail),
      onUnexpected,
    });
  }

  /** Fds a reply to `command` may carry. */
  replyFds(command: number): number {
    if (command === Command.DEVICE_GET_REGION_INFO) return 1;
    if (command === Command.DEVICE_GET_REGION_IO_FDS) return this.options.maxMsgFds;
    return 0;
  }

  /** Send `command` and resolve with its reply; an error reply rejects with ClientError. */
  request(command: number, body: Uint8Array | null, fds: readonly number[] = []): Promise<ReceivedFrame> {
    this.beforeSend();
    return this.requests.request(command, body, { fds, replyFds: this.replyFds(command) });
  }

  /** `request` for a message built in one buffer for its msg_id (the region-access fast path). */
  send(command: number, encode: (msgId: number) => Uint8Array): Promise<ReceivedFrame> {
    this.beforeSend();
    return this.requests.send(command, encode, { replyFds: this.replyFds(command) });
  }

  /** Send a message built for a fresh msg_id with NO_REPLY: nothing comes back. */
  post(encode: (msgId: number) => Uint8Array): void {
    this.beforeSend();
    this.conn.send(encode(this.requests.allocId()));
  }

  postCommand(command: number, body: Uint8Array | null): void {
    this.post((msgId) =>
      encodeMessage({ msgId, command, flags: HeaderFlag.COMMAND | HeaderFlag.NO_REPLY }, body),
    );
  }

  /** The largest data one message may carry both ways. */
  get maxTransfer(): number {
    return Math.max(1, Math.min(this.serverCaps.maxDataXferSize, this.options.maxDataXferSize));
  }

  /** Register an fd the client created; `closeOwned()` closes it. */
  own(fd: number): number {
    this.#owned.add(fd);
    return fd;
  }

  /** Close one fd the client owns now. */
  release(fd: number): void {
    if (this.#owned.delete(fd)) closeFds([fd]);
  }

  /** A new eventfd the client owns. */
  eventfd(): number {
    return this.own(native.eventfd(0));
  }

  closeOwned(): void {
    closeFds([...this.#owned]);
    this.#owned.clear();
  }
}
