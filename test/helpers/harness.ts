// Test harness: a device served over the in-memory pair (fast, no sockets) or over a real UNIX
// socket, with a connected TypeScript client. Also raw helpers for malformed-message tests.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { scratchpad } from "../../devices/scratchpad/index.ts";
import {
  type ClientOptions,
  createMemoryPair,
  Device,
  type DeviceDefinition,
  type DeviceFactory,
  type Endpoint,
  type EndpointOptions,
  HeaderFlag,
  MemorySink,
  type ReceivedFrame,
  Server,
  type Session,
  SinkLogger,
  serveConnection,
  VfioUserClient,
} from "../../src/index.ts";

export function deviceFactory(
  def: DeviceDefinition = scratchpad,
  options?: Record<string, string>,
): DeviceFactory {
  return (dma, log) => new Device(def, { dma, log, options });
}

export interface MemoryHarness {
  client: VfioUserClient;
  session: Session;
  sink: MemorySink;
  close(): Promise<void>;
}

/** A device served over the in-memory pair, with a negotiated client (unless told not to). */
export async function memoryHarness(
  opts: { factory?: DeviceFactory; client?: ClientOptions; server?: Partial<EndpointOptions> } = {},
): Promise<MemoryHarness> {
  const [a, b] = createMemoryPair();
  const sink = new MemorySink();
  const log = new SinkLogger(sink, "debug");
  const session = serveConnection(b, opts.factory ?? deviceFactory(), { log, ...opts.server });
  const client = await VfioUserClient.over(a, opts.client);
  return {
    client,
    session,
    sink,
    async close() {
      client.close();
      await session.ended;
      session.device.dispose();
    },
  };
}

export interface SocketHarness {
  dir: string;
  socketPath: string;
  server: Server;
  endpoint: Endpoint;
  sink: MemorySink;
  connect(opts?: ClientOptions): Promise<VfioUserClient>;
  close(): Promise<void>;
}

export async function socketHarness(
  opts: { factory?: DeviceFactory; server?: Partial<EndpointOptions> } = {},
): Promise<SocketHarness> {
  const dir = mkdtempSync(path.join(tmpdir(), "vfu-test-"));
  const socketPath = path.join(dir, "dev.sock");
  const sink = new MemorySink();
  const server = new Server({ log: new SinkLogger(sink, "debug") });
  const endpoint = server.listen(opts.factory ?? deviceFactory(), { socketPath, ...opts.server });
  return {
    dir,
    socketPath,
    server,
    endpoint,
    sink,
    connect: (o) => VfioUserClient.connect(socketPath, o),
    async close() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let rawId = 0x4000;

/** Send a raw command and wait for the reply with its msg_id. */
export async function rawRequest(
  client: VfioUserClient,
  command: number,
  body: Uint8Array | null,
  opts: { fds?: number[]; flags?: number; msgSize?: number } = {},
): Promise<ReceivedFrame> {
  const msgId = rawId++ & 0xffff;
  const msg = VfioUserClient.rawMessage(
    { msgId, command, flags: opts.flags ?? 0, msgSize: opts.msgSize },
    body,
  );
  const reply = await client.sendRaw(msg, opts.fds ?? [], msgId);
  return reply!;
}

/** The errno of an error reply (0 for a success reply). */
export function replyErrno(frame: ReceivedFrame): number {
  return frame.header.flags & HeaderFlag.ERROR ? frame.header.error : 0;
}

/** Resolve after every pending microtask and immediate has run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export function u32(value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value >>> 0, true);
  return b;
}

/** The errno a promise rejects with (null when it resolves): `t.equal(await rejection(p), 22)`. */
export async function rejection(p: Promise<unknown>): Promise<number | null> {
  try {
    await p;
    return null;
  } catch (err) {
    return (err as { errno?: number }).errno ?? -1;
  }
}
