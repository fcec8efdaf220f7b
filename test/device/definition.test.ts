// Typed definitions: a definition is typed by the behaviour its `create` returns, and every way of
// building or serving it hands that behaviour back typed (`device.behaviour`, and
// `endpoint.device.behaviour` through Server.listen), whichever Device class builds it; the bus
// layer's bound handlers never leak out as the behaviour.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { EDU_BAR, edu, Reg } from "../../devices/edu/index.ts";
import { pl061 } from "../../devices/pl061/index.ts";
import {
  type BehaviourOf,
  Device,
  DeviceDma,
  defineDevice,
  PciDevice,
  PlatformDevice,
  Server,
  silentLogger,
  VfioUserClient,
} from "../../src/index.ts";

const setup = () => ({ dma: new DeviceDma(silentLogger), log: silentLogger });

t.test("new Device / PciDevice of a PCI definition: behaviour is the model's own object", async (t) => {
  for (const d of [new Device(edu, setup()), new PciDevice(edu, setup())]) {
    const b: BehaviourOf<typeof edu> = d.behaviour;
    t.equal(b.buffer.length, 4096, `${d.constructor.name}: the edu API`);
    t.type(b.bars?.[EDU_BAR]?.read, "function", "with its BAR handlers, as create returned them");
    t.notOk("regions" in b, "not the bound region handlers the Device serves");
    // @ts-expect-error edu's behaviour has no such member
    void b.notThere;
    d.dispose();
  }
});

t.test("a platform and a bus-agnostic definition hand their behaviour back the same way", async (t) => {
  const p = new PlatformDevice(pl061, setup());
  p.behaviour.setInput(3, true);
  t.equal(p.behaviour.inputs, 0x08);
  t.ok(p.description.compatible.includes("arm,pl061"), "and the description");
  p.dispose();
  const plain = defineDevice({
    name: "plain",
    summary: "s",
    bus: "platform",
    regions: [],
    irqs: [],
    create: () => ({ regions: {}, answer: 42 as const }),
  });
  const d = new Device(plain, setup());
  const answer: 42 = d.behaviour.answer;
  t.equal(answer, 42);
  d.dispose();
});

t.test(
  "Server.listen types its endpoint by the factory: the served device's API over a socket",
  async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), "vfu-def-"));
    const server = new Server();
    t.teardown(async () => {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const socketPath = path.join(dir, "edu.sock");
    const ep = server.listen((dma, log) => new PciDevice(edu, { dma, log }), { socketPath });
    const client = await VfioUserClient.connect(socketPath);
    t.teardown(() => client.close());
    await client.regionWrite32(EDU_BAR, Reg.IRQ_RAISE, 0x40);
    t.equal(ep.device.behaviour.irqStatus, 0x40, "the client's write, seen through the typed behaviour");
    t.equal(ep.device.behaviour.stats.irqsRaised, 1);
  },
);
