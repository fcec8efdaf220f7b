// A PCI device definition served over the in-memory pair with a negotiated client, for the client
// helper tests.
import {
  createMemoryPair,
  PciDevice,
  type PciDeviceDefinition,
  serveConnection,
  silentLogger,
  VfioUserClient,
} from "../../src/index.ts";

export interface ServedPci {
  client: VfioUserClient;
  device: PciDevice;
  close(): Promise<void>;
}

export async function servePci(
  def: PciDeviceDefinition,
  options?: Record<string, string>,
): Promise<ServedPci> {
  const [a, b] = createMemoryPair();
  let device: PciDevice | undefined;
  const session = serveConnection(
    b,
    (dma, log) => {
      device = new PciDevice(def, { dma, log, options });
      return device;
    },
    { log: silentLogger },
  );
  const client = await VfioUserClient.over(a);
  return {
    client,
    device: device!,
    async close() {
      client.close();
      await session.ended;
      device!.dispose();
    },
  };
}
