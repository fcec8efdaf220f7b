// The server: one listening UNIX socket per device, any number of devices in one process. Each
// endpoint serves one client at a time; its device persists across clients and is reset when a
// client leaves.
//
// A second client that connects while one is being served is told so and dropped: its first
// command is answered with EBUSY (a header-only error reply) and the connection is closed; if it
// sends nothing it is closed after `Limits.negotiationTimeoutMs`. The first client is unaffected.
//
// The socket file is created with mode 0600 unless configured. An existing path is replaced only
// when it is a stale socket (nothing accepts on it); a live socket or any other kind of file is
// never removed: `listen` fails with a message naming the path.
import { lstatSync, unlinkSync } from "node:fs";
import { native, PollEvent, type PollerInstance } from "../../native/index.ts";
import { encodeErrorReply, HeaderFlag, wantsReply } from "../../protocol/index.ts";
import type { DeviceModel } from "../device/device.ts";
import { DeviceDma } from "../iommu/dma.ts";
import type { Connection } from "../transport/connection.ts";
import { SocketConnection } from "../transport/socket-connection.ts";
import { closeFds } from "../util/fds.ts";
import { type Logger, silentLogger } from "../util/log.ts";
import type { DmaLayout } from "./handlers/dma-messages.ts";
import { Limits } from "./limits.ts";
import { Session } from "./session.ts";

const EBUSY = 16;

export interface EndpointOptions {
  socketPath: string;
  /** Permission bits of the socket file (default 0o600). */
  mode?: number;
  writeMultiple?: boolean;
  dmaLayout?: DmaLayout;
  verbose?: boolean;
  log?: Logger;
}

/** Build the device for an endpoint, given the DMA port it must use. */
export type DeviceFactory = (dma: DeviceDma, log: Logger) => DeviceModel;

export class Endpoint {
  readonly socketPath: string;
  readonly device: DeviceModel;
  readonly log: Logger;
  readonly #listenFd: number;
  readonly #poller: PollerInstance;
  readonly #dma: DeviceDma;
  readonly #opts: EndpointOptions;
  #session: Session | null = null;
  readonly #busy = new Set<Connection>();
  #closed = false;
  /** Sessions served so far (for statistics and tests). */
  sessionsServed = 0;
  onSession: ((s: Session) => void) | null = null;

  constructor(factory: DeviceFactory, opts: EndpointOptions) {
    this.socketPath = opts.socketPath;
    this.#opts = opts;
    this.log = opts.log ?? silentLogger;
    this.#dma = new DeviceDma(this.log);
    prepareSocketPath(opts.socketPath);
    this.#listenFd = native.listenUnix(opts.socketPath, 16, opts.mode ?? 0o600);
    try {
      this.device = factory(this.#dma, this.log);
    } catch (err) {
      native.close(this.#listenFd);
      unlinkQuietly(opts.socketPath);
      throw err;
    }
    this.#poller = new native.Poller(this.#listenFd, (status) => {
      if (status >= 0) this.#acceptAll();
    });
    this.#poller.start(PollEvent.READABLE);
    this.log.info(`serving ${this.device.name} on ${opts.socketPath}`);
  }

  /** The session of the client being served, if any. */
  get session(): Session | null {
    return this.#session;
  }

  #acceptAll(): void {
    for (;;) {
      let fd: number | null;
      try {
        fd = native.accept(this.#listenFd);
      } catch (err) {
        this.log.warn(`accept failed: ${(err as Error).message}`);
        return;
      }
      if (fd === null) return;
      const conn = new SocketConnection(fd, {
        maxMessageSize: Limits.maxMessageSize,
        maxRecvFds: Limits.maxMsgFds,
        maxQueuedBytes: Limits.maxQueuedReplyBytes,
        readBufferSize: Limits.readBufferSize,
        name: `${this.device.name} client`,
      });
      if (this.#session || this.#closed) this.#refuseBusy(conn);
      else this.#startSession(conn);
    }
  }

  #startSession(conn: Connection): void {
    const session = new Session(conn, this.device, {
      log: this.log,
      dma: this.#dma,
      writeMultiple: this.#opts.writeMultiple ?? true,
      dmaLayout: this.#opts.dmaLayout ?? "spec",
      verbose: this.#opts.verbose ?? false,
    });
    this.#session = session;
    this.sessionsServed++;
    this.log.info("client connected");
    void session.ended.then(() => {
      if (this.#session === session) this.#session = null;
    });
    this.onSession?.(session);
  }

  #refuseBusy(conn: Connection): void {
    this.log.warn(`refusing a second client: ${this.device.name} already has one`);
    this.#busy.add(conn);
    const timer = setTimeout(() => conn.close(), Limits.negotiationTimeoutMs);
    conn.setHandlers({
      onFrame: (frame) => {
        closeFds(frame.fds);
        const { header } = frame;
        if ((header.flags & HeaderFlag.TYPE_MASK) === HeaderFlag.COMMAND && wantsReply(header.flags)) {
          conn.send(encodeErrorReply(header.msgId, header.command, EBUSY));
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
    this.#poller.close();
    native.close(this.#listenFd);
    unlinkQuietly(this.socketPath);
    for (const c of [...this.#busy]) c.close();
    const s = this.#session;
    if (s) {
      s.close();
      await s.ended;
    }
    this.device.dispose();
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** Make `path` free for a new socket, or throw a message naming why it is not. */
export function prepareSocketPath(path: string): void {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw new Error(`cannot inspect socket path ${path}: ${(err as Error).message}`);
  }
  if (!st.isSocket()) {
    throw new Error(`${path} exists and is not a socket; refusing to remove it`);
  }
  let probe: number;
  try {
    probe = native.connectUnix(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ECONNREFUSED") {
      unlinkSync(path); // stale: nothing accepts on it
      return;
    }
    throw new Error(`cannot probe existing socket ${path}: ${(err as Error).message}`);
  }
  native.close(probe);
  throw new Error(`${path} is in use by a running server; choose another --socket`);
}

/** Several endpoints in one process. */
export class Server {
  readonly endpoints: Endpoint[] = [];
  readonly log: Logger;

  constructor(opts: { log?: Logger } = {}) {
    this.log = opts.log ?? silentLogger;
  }

  listen(factory: DeviceFactory, opts: EndpointOptions): Endpoint {
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
  factory: DeviceFactory | DeviceModel,
  opts: Omit<EndpointOptions, "socketPath"> & { dma?: DeviceDma } = {},
): Session {
  const log = opts.log ?? silentLogger;
  const dma = opts.dma ?? new DeviceDma(log);
  const device = typeof factory === "function" ? factory(dma, log) : factory;
  return new Session(conn, device, {
    log,
    dma,
    writeMultiple: opts.writeMultiple ?? true,
    dmaLayout: opts.dmaLayout ?? "spec",
    verbose: opts.verbose ?? false,
  });
}
