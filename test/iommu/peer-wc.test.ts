// Peer-to-peer DMA into another device's trapped WC region goes through that device's
// write-combining buffer: the pieces of one transfer (split into the region's access sizes) reach
// its model as one write when the transfer ends, and a UC register write after it finds it applied.
import t from "tap";
import { Device, DeviceDma, defineDevice, PeerRegistry, silentLogger } from "../../src/index.ts";
import { bytes, RW, space } from "./helpers.ts";

t.test("a peer transfer into a WC region arrives combined, in order with UC writes", async (t) => {
  const s = space();
  const dma = new DeviceDma(silentLogger);
  dma.attach(s);
  const calls: [string, number, number[]][] = [];
  const def = defineDevice({
    name: "peer-fb",
    summary: "a trapped WC framebuffer and a UC doorbell",
    bus: "platform",
    regions: [
      { index: 0, name: "fb", size: 0x1000, accessSizes: [4], cache: "WC" },
      { index: 1, name: "db", size: 0x100, accessSizes: [4], cache: "UC" },
    ],
    irqs: [],
    create: () => ({
      regions: {
        0: {
          write: (offset, data) => {
            calls.push(["fb", offset, [...data]]);
          },
          read: () => 0,
        },
        1: {
          write: (offset, data) => {
            calls.push(["db", offset, [...data]]);
          },
        },
      },
    }),
  });
  const peer = new Device(def, { dma: new DeviceDma(silentLogger), log: silentLogger });
  const registry = new PeerRegistry();
  const reg = registry.register("fb0", peer);
  const fb = s.mapPeer(0x8000_0000n, registry.resolve("fb0", 0), RW);
  s.mapPeer(0x9000_0000n, registry.resolve("fb0", 1), RW);
  t.equal(fb.backing.cache, "WC");

  const pixels = Uint8Array.from({ length: 16 }, (_, i) => i);
  await dma.write(0x8000_0020n, pixels); // four 4-byte accesses, one transfer
  t.same(calls, [["fb", 0x20, [...pixels]]], "one combined write of the whole transfer");
  t.equal(peer.wcStats.buffered, 4);
  t.equal(peer.wcStats.flushes.batch, 1);

  const first = dma.write(0x8000_0100n, bytes(1, 1, 1, 1));
  const second = dma.write(0x9000_0000n, bytes(9, 0, 0, 0));
  await Promise.all([first, second]);
  t.same(calls.slice(1), [
    ["fb", 0x100, [1, 1, 1, 1]],
    ["db", 0, [9, 0, 0, 0]],
  ]);
  reg.unregister();
  await s.unmapAll();
  peer.dispose();
});
