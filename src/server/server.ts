// The server: one listening UNIX socket per device, any number of devices in one process. Each
// endpoint serves one client at a time; its device persists across clients and is reset when a
// client leaves.
//
// A second client that connects while one is being served is told so and dropped: its first
// command is answered with Errno.EBUSY (a header-only error reply) and the connection is closed; if it
// sends nothing it is closed after `Limits.negotiationTimeoutMs`. The first client is unaffected.
//
// The socket file is created with mode 0600 unless configured. An existing path is replaced only
// when it is a stale socket (nothing accepts on it); a live socket or any other kind of file is
// never removed: `listen` fails with a message naming the path.
//
// The log names each client by its SO_PEERCRED (pid, command, uid, gid) when it connects, and
// says why it went when it disconnects (session.ts).
import { readFileSync } from "node:fs";
import { Errno, encodeErrorReply, HeaderFlag, wantsReply } from "../../protocol/index.ts";
import type { DeviceModel } from "../device/device.ts";
import { DeviceDma } from "../iommu/dma.ts";
import type { Connection, PeerCredentials } from "../transport/connection.ts";
import { UnixListener } from "../transport/listener.ts";

export { prepareSocketPath } from "../transport/listener.ts";

import { closeFds } from "../util/fds.ts";
import { type Logger, silentLogger } from "../util/log.ts";
import type { DmaLayout } from "./handlers/dma-messages.ts";
import { Limits } from "./limits.ts";
import { Session } from "./session.ts";

export interface EndpointOptions {
  socketPath: string;
  /** Permission bits of the socket file (default 0o600). */
  mode?: number;
  writeMultiple?: boolean;
  dmaLayout?: DmaLayout;
  verbose?: boolean;
  /** Accept DMA_MAP fds without F_SEAL_SHRINK, for a client trusted not to shrink them (a shrink
   * then crashes the server with SIGBUS). Default false: such maps are refused (dma-fd-policy.ts). */
  allowUnsealedDmaFds?: boolean;
  /** Offer memory-backed regions for mmap (default true). False: every region is reported without
   * MMAP and stays trapped, so QEMU keeps posting its writes (the `--no-mmap` switch). */
  mmap?: boolean;
  log?: Logger;
}

/** Build the device for an endpoint, given the DMA port it must use. */
export type DeviceFactory<D extends DeviceModel = DeviceModel> = (dma: DeviceDma, log: Logger) => D;

/** One listening socket and its device, typed as the factory built it (`endpoint.device.behaviour`
 * is the model's API for a `Device<B>`). */
export class Endpoint<D extends DeviceModel = DeviceModel> {
  readonly socketPath: string;
  readonly device: D;
  readonly log: Logger;
  readonly #listener: UnixListener;
  readonly #dma: DeviceDma;
  readonly #opts: EndpointOptions;
  #session: Session | null = null;
  readonly #busy = new Set<Connection>();
  #closed = false;
  /** Sessions served so far (for statistics and tests). */
  sessionsServed = 0;
  onSession: ((s: Session) => void) | null = null;

  constructor(factory: DeviceFactory<D>, opts: EndpointOptions) {
    this.socketPath = opts.socketPath;
    this.#opts = opts;
    this.log = opts.log ?? silentLogger;
    this.#dma = new DeviceDma(this.log);
    const device = factory(this.#dma, this.log);
    try {
      this.#listener = new UnixListener(
        opts.socketPath,
        opts.mode ?? 0o600,
        {
          maxMessageSize: Limits.maxMessageSize,
          maxRecvFds: Limits.maxMsgFds,
          maxQueuedBytes: Limits.maxQueuedReplyBytes,
          readBufferSize: Limits.readBufferSize,
          name: `${device.name} client`,
        },
        (conn) => {
          if (this.#session || this.#closed) this.#refuseBusy(conn);
          else this.#startSession(conn);
        },
        (err) => this.log.warn(`accept failed: ${err.message}`),
      );
    } catch (err) {
      device.dispose();
      throw err;
    }
    this.device = device;
    this.log.info(`serving ${device.name} on ${opts.socketPath}`);
  }

  /** The session of the client being served, if any. */
  get session(): Session | null {
    return this.#session;
  }

  #startSession(conn: Connection): void {
    const session = new Session(conn, this.device, {
      log: this.log,
      dma: this.#dma,
      writeMultiple: this.#opts.writeMultiple ?? true,
      dmaLayout: this.#opts.dmaLayout ?? "spec",
      verbose: this.#opts.verbose ?? false,
      allowUnsealedDmaFds: this.#opts.allowUnsealedDmaFds ?? false,
      mmap: this.#opts.mmap ?? true,
    });
    this.#session = session;
    this.sessionsServed++;
    this.log.info(`client connected: ${describePeer(conn.peerCredentials?.() ?? null)}`);
    void session.ended.then(() => {
      if (this.#session === session) this.#session = null;
    });
    this.onSession?.(session);
  }

  #refuseBusy(conn: Connection): void {
    this.log.warn(
      `refusing a second client (${describePeer(conn.peerCredentials?.() ?? null)}): ${this.device.name} already has one`,
    );
    this.#busy.add(conn);
    const timer = setTimeout(() => conn.close(), Limits.negotiationTimeoutMs);
    conn.setHandlers({
      onFrame: (frame) => {
        closeFds(frame.fds);
        const { header } = frame;
        if ((header.flags & HeaderFlag.TYPE_MASK) === HeaderFlag.COMMAND && wantsReply(header.flags)) {
          conn.send(encodeErrorReply(header.msgId, header.command, Errno.EBUSY));
        }
        conn.close();
      },
      onClose: () => {
        clearTimeout(timer);
        this.#busy.delete(conn);
      },
    });
  }

  /** Stop listening, drop the client, release the device. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener.close();
    for (const c of [...this.#busy]) c.close();
    const s = this.#session;
    if (s) {
      s.close("the server is stopping");
      await s.ended;
    }
    this.device.dispose();
  }
}

/** Several endpoints in one process. */
export class Server {
  readonly endpoints: Endpoint[] = [];
  readonly log: Logger;

  constructor(opts: { log?: Logger } = {}) {
    this.log = opts.log ?? silentLogger;
  }

  listen<D extends DeviceModel>(factory: DeviceFactory<D>, opts: EndpointOptions): Endpoint<D> {
    const ep = new Endpoint(factory, { log: this.log, ...opts });
    this.endpoints.push(ep);
    return ep;
  }

  async close(): Promise<void> {
    await Promise.all(this.endpoints.map((e) => e.close()));
    this.endpoints.length = 0;
  }
}

/** Serve a device over an already-connected transport (tests, fuzzing, embedding). */
export function serveConnection(
  conn: Connection,
  factory: DeviceFactory,
  opts: Omit<EndpointOptions, "socketPath"> & { dma?: DeviceDma } = {},
): Session {
  const log = opts.log ?? silentLogger;
  const dma = opts.dma ?? new DeviceDma(log);
  const device = factory(dma, log);
  return new Session(conn, device, {
    log,
    dma,
    writeMultiple: opts.writeMultiple ?? true,
    dmaLayout: opts.dmaLayout ?? "spec",
    verbose: opts.verbose ?? false,
    allowUnsealedDmaFds: opts.allowUnsealedDmaFds ?? false,
    mmap: opts.mmap ?? true,
  });
}

/** "pid 4242 (qemu-system-x86), uid 0, gid 0": the peer of a connection, its command name read
 * from /proc when it is visible there. */
export function describePeer(peer: PeerCredentials | null): string {
  if (!peer) return "peer unknown (not a UNIX socket)";
  let comm = "";
  if (peer.pid > 0) {
    try {
      comm = ` (${readFileSync(`/proc/${peer.pid}/comm`, "utf8").trim()})`;
    } catch {
      // gone already, or in another pid namespace
    }
  }
  const pid = peer.pid > 0 ? `pid ${peer.pid}` : "pid unknown";
  return `${pid}${comm}, uid ${peer.uid}, gid ${peer.gid}`;
}
