// Shared by the hostile-client tests: a server with several endpoints on real sockets and an
// in-memory log, and a raw client that answers the server's DMA requests only when told to.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Reg, scratchpad } from "../../devices/scratchpad/index.ts";
import { native } from "../../native/index.ts";
import {
  Command,
  Device,
  type DeviceDefinition,
  type DeviceFactory,
  type Endpoint,
  type EndpointOptions,
  encodeMessage,
  encodeVersion,
  formatCapabilities,
  HeaderFlag,
  MemorySink,
  type ReceivedFrame,
  Server,
  SinkLogger,
} from "../../src/index.ts";
import type { Connection } from "../../src/transport/connection.ts";
import { SocketConnection } from "../../src/transport/socket-connection.ts";

export { Reg, scratchpad };

export const RW = 0x3;

export function factory(def: DeviceDefinition = scratchpad): DeviceFactory {
  return (dma, log) => new Device(def, { dma, log });
}

export interface TestServer {
  dir: string;
  server: Server;
  sink: MemorySink;
  endpoints: Endpoint[];
  path(i?: number): string;
  close(): Promise<void>;
}

/** One endpoint per definition, each on its own socket in a fresh directory. */
export function startServer(
  defs: readonly (DeviceDefinition | DeviceFactory)[] = [scratchpad],
  opts: Partial<EndpointOptions> = {},
): TestServer {
  const dir = mkdtempSync(path.join(tmpdir(), "vfu-hostile-"));
  const sink = new MemorySink();
  const server = new Server({ log: new SinkLogger(sink, "debug") });
  const endpoints = defs.map((d, i) =>
    server.listen(typeof d === "function" ? d : factory(d), {
      socketPath: path.join(dir, `dev${i}.sock`),
      ...opts,
    }),
  );
  return {
    dir,
    server,
    sink,
    endpoints,
    path: (i = 0) => endpoints[i]!.socketPath,
    async close() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Poll `cond` every few ms until it holds; rejects after `ms`. */
export async function waitFor(cond: () => boolean, ms = 5000, what = "condition"): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** The errno of an error reply (0 for a success reply). */
export function errnoOf(frame: ReceivedFrame): number {
  return frame.header.flags & HeaderFlag.ERROR ? frame.header.error : 0;
}

export function u32(value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value >>> 0, true);
  return b;
}

/**
 * A client over a real socket that keeps the server's DMA_READ/DMA_WRITE requests in `requests`
 * until the test answers them, and resolves `request()` with the reply frame, errors included.
 * OWNERSHIP: fds received in replies are closed.
 */
export class RawClient {
  readonly conn: Connection;
  readonly requests: ReceivedFrame[] = [];
  closed = false;
  #nextId = 1;
  readonly #waiting = new Map<number, (f: ReceivedFrame) => void>();

  constructor(conn: Connection) {
    this.conn = conn;
    conn.setHandlers({
      onFrame: (f) => {
        if ((f.header.flags & HeaderFlag.TYPE_MASK) === HeaderFlag.COMMAND) {
          this.requests.push(f);
          return;
        }
        for (const fd of f.fds) native.close(fd);
        const w = this.#waiting.get(f.header.msgId);
        this.#waiting.delete(f.header.msgId);
        w?.(f);
      },
      onClose: () => {
        this.closed = true;
      },
    });
  }

  static async connect(socketPath: string, caps: { maxDataXferSize?: number } = {}): Promise<RawClient> {
    const conn = new SocketConnection(native.connectUnix(socketPath), {
      maxMessageSize: 64 * 1024 * 1024,
      maxRecvFds: 8,
      maxQueuedBytes: 1 << 30,
    });
    const c = new RawClient(conn);
    const json = formatCapabilities({ maxMsgFds: 8, maxDataXferSize: caps.maxDataXferSize ?? 1024 * 1024 });
    const reply = await c.request(Command.VERSION, encodeVersion({ major: 0, minor: 0, json }));
    if (errnoOf(reply) !== 0) throw new Error(`VERSION failed: ${errnoOf(reply)}`);
    return c;
  }

  /** Send a command (fds attached) and resolve with its reply. */
  request(command: number, body: Uint8Array | null, fds: number[] = []): Promise<ReceivedFrame> {
    const msgId = this.#nextId++ & 0xffff;
    const p = new Promise<ReceivedFrame>((resolve) => this.#waiting.set(msgId, resolve));
    this.conn.send(encodeMessage({ msgId, command, flags: HeaderFlag.COMMAND }, body), fds);
    return p;
  }

  /** Send only a header that claims `msgSize` bytes, and resolve with the reply to it. */
  requestHeader(command: number, msgSize: number): Promise<ReceivedFrame> {
    const msgId = this.#nextId++ & 0xffff;
    const p = new Promise<ReceivedFrame>((resolve) => this.#waiting.set(msgId, resolve));
    const header = encodeMessage({ msgId, command, flags: HeaderFlag.COMMAND }, null);
    new DataView(header.buffer).setUint32(4, msgSize, true);
    this.conn.send(header);
    return p;
  }

  /** A region write of a 32-bit value, answered. */
  async write32(region: number, offset: number, value: number): Promise<number> {
    const body = new Uint8Array(20);
    const v = new DataView(body.buffer);
    v.setBigUint64(0, BigInt(offset), true);
    v.setUint32(8, region, true);
    v.setUint32(12, 4, true);
    v.setUint32(16, value >>> 0, true);
    return errnoOf(await this.request(Command.REGION_WRITE, body));
  }

  async read32(region: number, offset: number): Promise<number> {
    const body = new Uint8Array(16);
    const v = new DataView(body.buffer);
    v.setBigUint64(0, BigInt(offset), true);
    v.setUint32(8, region, true);
    v.setUint32(12, 4, true);
    const r = await this.request(Command.REGION_READ, body);
    if (errnoOf(r) !== 0) throw new Error(`REGION_READ failed: ${errnoOf(r)}`);
    return new DataView(r.body.buffer, r.body.byteOffset).getUint32(16, true);
  }

  /** Answer a DMA_READ with `fill` bytes, or a DMA_WRITE with its echo (spec layout). */
  answer(req: ReceivedFrame, fill = 0x5a): void {
    const head = req.body.subarray(0, 16);
    const count = Number(new DataView(head.buffer, head.byteOffset, 16).getBigUint64(8, true));
    let body: Uint8Array;
    if (req.header.command === Command.DMA_READ) {
      body = new Uint8Array(16 + count).fill(fill, 16);
      body.set(head);
    } else {
      body = head.slice();
    }
    this.conn.send(
      encodeMessage({ msgId: req.header.msgId, command: req.header.command, flags: HeaderFlag.REPLY }, body),
    );
  }

  close(): void {
    this.conn.close();
  }
}

/** Program the scratchpad's DMA engine and start it (1: client memory -> MEM, 2: MEM -> client).
 * Returns the RAISED count from before: the DMA is over once RAISED has moved past it. */
export async function startDma(c: RawClient, iova: bigint, length: number, cmd: 1 | 2): Promise<number> {
  const raised = await c.read32(0, Reg.RAISED);
  await c.write32(0, Reg.DMA_ADDR_LO, Number(iova & 0xffffffffn));
  await c.write32(0, Reg.DMA_ADDR_HI, Number(iova >> 32n));
  await c.write32(0, Reg.DMA_LEN, length);
  await c.write32(0, Reg.DMA_CMD, cmd);
  return raised;
}

/** Wait until the DMA started after RAISED read `raised` is over; returns DMA_STATUS (2 done,
 * 3 fault), or -1 when it did not end within `ms`. */
export async function dmaStatus(c: RawClient, raised: number, ms = 5000): Promise<number> {
  const end = Date.now() + ms;
  while ((await c.read32(0, Reg.RAISED)) === raised) {
    if (Date.now() > end) return -1;
    await new Promise((r) => setTimeout(r, 2));
  }
  return c.read32(0, Reg.DMA_STATUS);
}
