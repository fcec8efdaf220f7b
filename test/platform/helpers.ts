// Platform-device test harness: a PlatformDevice served over the in-memory pair or over a real
// UNIX socket (Server + VfioUserClient.connect), with the same shape either way so a suite can
// run on both transports.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  type ClientOptions,
  createMemoryPair,
  type DeviceBehaviour,
  type DeviceFactory,
  PlatformDevice,
  type PlatformDeviceDefinition,
  Server,
  serveConnection,
  silentLogger,
  VfioUserClient,
} from "../../src/index.ts";

export type Transport = "memory" | "socket";
export const TRANSPORTS: readonly Transport[] = ["memory", "socket"];

export interface PlatformHarness<B extends DeviceBehaviour> {
  client: VfioUserClient;
  device: PlatformDevice<B>;
  close(): Promise<void>;
}

export async function servePlatform<B extends DeviceBehaviour>(
  def: PlatformDeviceDefinition<B>,
  transport: Transport,
  opts: { options?: Record<string, string>; client?: ClientOptions } = {},
): Promise<PlatformHarness<B>> {
  let device: PlatformDevice<B> | undefined;
  const make: DeviceFactory = (dma, log) => {
    device = new PlatformDevice(def, { dma, log, options: opts.options });
    return device;
  };
  if (transport === "memory") {
    const [a, b] = createMemoryPair();
    const session = serveConnection(b, make, { log: silentLogger });
    const client = await VfioUserClient.over(a, opts.client);
    return {
      client,
      device: device!,
      async close() {
        client.close();
        await session.ended;
        session.device.dispose();
      },
    };
  }
  const dir = mkdtempSync(path.join(tmpdir(), "vfu-platform-"));
  const socketPath = path.join(dir, "dev.sock");
  const server = new Server({ log: silentLogger });
  server.listen(make, { socketPath });
  const client = await VfioUserClient.connect(socketPath, opts.client);
  return {
    client,
    device: device!,
    async close() {
      client.close();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The errno a promise rejects with, or 0 when it resolves. */
export async function errnoOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 0;
  } catch (err) {
    return (err as { errno?: number }).errno ?? -1;
  }
}
