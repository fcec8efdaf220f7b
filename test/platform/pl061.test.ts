// The PL061 GPIO end to end through the TypeScript client, over the in-memory pair and over a
// real UNIX socket: what the device reports, its device-tree region, the address-masked data
// register, interrupt detection and the interrupt line as the client's eventfd sees it.

import t from "tap";
import { ID_VALUES, type Pl061Behaviour, pl061, Reg } from "../../devices/pl061/index.ts";
import { Errno } from "../../protocol/index.ts";
import {
  DeviceFlag,
  describeDevice,
  IrqInfoFlag,
  IrqSetFlag,
  RegionCapId,
  RegionFlag,
  renderDts,
  VFU_REGION_TYPE,
  type VfioUserClient,
  VfuRegionSubtype,
} from "../../src/index.ts";
import { errnoOf, type PlatformHarness, servePlatform, TRANSPORTS } from "./helpers.ts";

type Harness = PlatformHarness<Pl061Behaviour>;

/** Unmask the (automasked) interrupt line. */
function unmask(client: VfioUserClient): Promise<void> {
  return client.setIrqs({
    index: 0,
    flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_UNMASK,
    start: 0,
    count: 1,
  });
}

/** A round trip, so anything the server did before it has reached us. */
async function sync(client: VfioUserClient): Promise<void> {
  await client.regionRead32(0, Reg.DIR);
}

/** Configure pin interrupts: sense/both/event registers, clear stale edges, then unmask pins. */
async function configure(h: Harness, cfg: { is: number; ibe: number; iev: number; ie: number }) {
  await h.client.regionWrite32(0, Reg.IS, cfg.is);
  await h.client.regionWrite32(0, Reg.IBE, cfg.ibe);
  await h.client.regionWrite32(0, Reg.IEV, cfg.iev);
  await h.client.regionWrite32(0, Reg.IC, 0xff);
  await h.client.regionWrite32(0, Reg.IE, cfg.ie);
}

for (const transport of TRANSPORTS) {
  t.test(`over ${transport === "memory" ? "the in-memory pair" : "a UNIX socket"}`, async (t) => {
    t.test(
      "DEVICE_GET_INFO reports a PLATFORM device with one MMIO region, the DTS region, one line",
      async (t) => {
        const h = await servePlatform(pl061, transport);
        t.teardown(h.close);
        const info = await h.client.getDeviceInfo();
        t.equal(info.flags & DeviceFlag.PLATFORM, DeviceFlag.PLATFORM, "PLATFORM");
        t.equal(info.flags & DeviceFlag.PCI, 0, "not PCI");
        t.equal(info.flags & DeviceFlag.RESET, DeviceFlag.RESET, "RESET");
        t.equal(info.numRegions, 2);
        t.equal(info.numIrqs, 1);

        const regs = await h.client.getRegionInfo(0);
        t.equal(regs.size, 0x1000n);
        t.equal(regs.flags, RegionFlag.READ | RegionFlag.WRITE, "read/write, no mmap, no caps");
        t.same(regs.caps, []);
        t.equal(regs.fd, null);

        const dtText = new TextEncoder().encode(pl061.dts);
        const dt = await h.client.getRegionInfo(1);
        t.equal(dt.size, BigInt(dtText.length), "the region is exactly the text");
        t.equal(dt.flags, RegionFlag.READ | RegionFlag.CAPS, "read-only, with caps");
        t.equal(dt.argsz, 48, "32 + one 16-byte TYPE cap");
        t.same(dt.caps, [
          { id: RegionCapId.TYPE, version: 1, type: VFU_REGION_TYPE, subtype: VfuRegionSubtype.DEVICE_TREE },
        ]);
        t.equal(VFU_REGION_TYPE, 0x8000_5646, "the documented type");
        t.equal(dt.fd, null);

        t.equal(await errnoOf(h.client.getRegionInfo(2)), Errno.EINVAL, "no region 2");
        t.equal(await errnoOf(h.client.regionWrite32(1, 0, 0)), Errno.EINVAL, "the DTS region is read-only");

        const irq = await h.client.getIrqInfo(0);
        t.equal(irq.count, 1);
        t.equal(
          irq.flags,
          IrqInfoFlag.EVENTFD | IrqInfoFlag.MASKABLE | IrqInfoFlag.AUTOMASKED,
          "a level line",
        );
        t.equal(await errnoOf(h.client.getIrqInfo(1)), Errno.EINVAL, "no interrupt index 1");
      },
    );

    t.test("the DTS read over the wire is the API's rendering", async (t) => {
      const h = await servePlatform(pl061, transport);
      t.teardown(h.close);
      const dts = await h.client.readDeviceTree();
      t.equal(dts, renderDts(describeDevice(pl061)));
      t.equal(dts, pl061.dts);
      t.match(dts, /compatible = "arm,pl061", "arm,primecell";/);
      t.match(dts, /reg = <0x0 0x0 0x1000>;/);
      t.match(dts, /interrupts = <0 0 4>;/);
      t.match(dts, /clock-names = "apb_pclk";/);
      const found = await h.client.findRegionByType(VFU_REGION_TYPE, VfuRegionSubtype.DEVICE_TREE);
      t.equal(found?.index, 1);
      t.equal(await h.client.findRegionByType(VFU_REGION_TYPE, 99), null, "an unknown subtype is not found");
    });

    t.test("a client with a small max_data_xfer_size reads the DTS in pieces", async (t) => {
      const h = await servePlatform(pl061, transport, { client: { maxDataXferSize: 100 } });
      t.teardown(h.close);
      t.equal(await h.client.readDeviceTree(), pl061.dts);
      const piece = await h.client.regionRead(1, 3, 7);
      t.equal(new TextDecoder().decode(piece), pl061.dts.slice(3, 10), "any width, any offset");
    });

    t.test("identification registers", async (t) => {
      const h = await servePlatform(pl061, transport);
      t.teardown(h.close);
      const ids: number[] = [];
      for (let off = 0xfe0; off <= 0xffc; off += 4) ids.push(await h.client.regionRead32(0, off));
      t.same(ids, ID_VALUES);
      t.same(ids, [0x61, 0x10, 0x04, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
      t.equal(await h.client.regionRead32(0, 0x424), 0, "reserved reads as 0");
      t.equal(await h.client.regionRead32(0, Reg.IC), 0, "GPIOIC is write-only: reads as 0");
    });

    t.test("GPIODATA: direction and address masking", async (t) => {
      const h = await servePlatform(pl061, transport);
      t.teardown(h.close);
      const { client, device } = h;
      const seen: Array<{ mask: number; levels: number }> = [];
      device.behaviour.onOutputChange = (o) => seen.push(o);

      await client.regionWrite32(0, Reg.DIR, 0x0f);
      t.equal(await client.regionRead32(0, Reg.DIR), 0x0f);
      await client.regionWrite32(0, 0x3fc, 0xff); // all eight pins unmasked
      t.equal(await client.regionRead32(0, 0x3fc), 0x0f, "outputs read back their level, inputs are low");
      t.same(device.behaviour.outputs(), { mask: 0x0f, levels: 0x0f });
      t.same(seen.at(-1), { mask: 0x0f, levels: 0x0f }, "the server side saw the outputs change");

      await client.regionWrite32(0, 0x04 << 2, 0x00); // only pin 2 under the mask
      t.equal(await client.regionRead32(0, 0x3fc), 0x0b, "only pin 2 changed");
      t.equal(await client.regionRead32(0, 0x03 << 2), 0x03, "a read sees only the masked pins");
      await client.regionWrite32(0, 0x000, 0x00);
      t.equal(await client.regionRead32(0, 0x3fc), 0x0b, "offset 0 masks every pin: nothing written");
      t.equal(await client.regionRead32(0, 0x000), 0, "and reads as 0");

      device.behaviour.setInputs(0xa0);
      t.equal(await client.regionRead32(0, 0x3fc), 0xab, "inputs 5 and 7 driven high from the server side");
      t.equal(await client.regionRead32(0, 0x80 << 2), 0x80, "pin 7 alone");
      device.behaviour.setInput(5, false);
      t.equal(await client.regionRead32(0, 0x3fc), 0x8b);
      t.equal(device.behaviour.inputs, 0x80);

      await client.regionWrite32(0, Reg.DIR, 0xff);
      t.equal(
        await client.regionRead32(0, 0x3fc),
        0xfb,
        "the latch kept the bits written while they were inputs",
      );
      await client.regionWrite32(0, Reg.AFSEL, 0xf0);
      t.equal(await client.regionRead32(0, Reg.AFSEL), 0xf0);
      t.equal(
        await client.regionRead32(0, 0x3fc),
        0x8b,
        "pins under hardware control read their outside level",
      );
      await client.regionWrite32(0, Reg.DIR, 0xffff_ff00);
      t.equal(await client.regionRead32(0, Reg.DIR), 0, "registers are 8 bits: upper bits are ignored");

      await client.reset();
      t.equal(await client.regionRead32(0, Reg.DIR), 0, "reset: all inputs");
      t.equal(await client.regionRead32(0, Reg.AFSEL), 0);
      t.equal(await client.regionRead32(0, 0x3fc), 0x80, "outside levels survive a device reset");
    });

    t.test("access sizes: 4-byte aligned accesses only, everything else EINVAL", async (t) => {
      const h = await servePlatform(pl061, transport);
      t.teardown(h.close);
      const { client } = h;
      for (const n of [1, 2, 8]) {
        t.equal(await errnoOf(client.regionRead(0, Reg.DIR, n)), Errno.EINVAL, `${n}-byte read`);
        t.equal(
          await errnoOf(client.regionWrite(0, Reg.DIR, new Uint8Array(n).fill(0xff))),
          Errno.EINVAL,
          `${n}-byte write`,
        );
      }
      t.equal(await errnoOf(client.regionRead(0, Reg.DIR + 2, 4)), Errno.EINVAL, "misaligned read");
      t.equal(await errnoOf(client.regionWrite32(0, Reg.DIR + 1, 0xff)), Errno.EINVAL, "misaligned write");
      t.equal(await errnoOf(client.regionRead(0, 0x1000, 4)), Errno.EINVAL, "past the end");
      t.equal(await client.regionRead32(0, Reg.DIR), 0, "nothing refused reached the register");
    });

    t.test(
      "edge interrupts: rising, falling, both; GPIOIC clears; the client's eventfd sees them",
      async (t) => {
        const h = await servePlatform(pl061, transport);
        t.teardown(h.close);
        const { client, device } = h;
        const [fd] = await client.enableInterrupts(0, 0, 1);
        const gpio = device.behaviour;

        // rising edge on pin 0
        await configure(h, { is: 0, ibe: 0, iev: 0x01, ie: 0x01 });
        gpio.setInput(0, true);
        t.ok((await client.waitForInterrupt(fd!)) >= 1, "rising edge raised the line");
        t.equal(await client.regionRead32(0, Reg.RIS), 0x01);
        t.equal(await client.regionRead32(0, Reg.MIS), 0x01);
        t.ok(gpio.interruptAsserted);
        await client.regionWrite32(0, Reg.IC, 0x01);
        t.equal(await client.regionRead32(0, Reg.RIS), 0, "GPIOIC cleared the latched edge");
        t.notOk(gpio.interruptAsserted, "the line dropped");
        await unmask(client);
        gpio.setInput(0, false);
        await sync(client);
        t.equal(client.interruptCount(fd!), 0, "a falling edge does not trigger a rising-edge pin");
        t.equal(await client.regionRead32(0, Reg.RIS), 0);

        // falling edge on pin 1 (starts high)
        gpio.setInput(1, true);
        await configure(h, { is: 0, ibe: 0, iev: 0x00, ie: 0x02 });
        gpio.setInput(1, false);
        t.ok((await client.waitForInterrupt(fd!)) >= 1, "falling edge raised the line");
        t.equal(await client.regionRead32(0, Reg.MIS), 0x02);
        await client.regionWrite32(0, Reg.IC, 0x02);
        await unmask(client);

        // both edges on pin 2
        await configure(h, { is: 0, ibe: 0x04, iev: 0x00, ie: 0x04 });
        gpio.setInput(2, true);
        t.ok((await client.waitForInterrupt(fd!)) >= 1, "both edges: rising");
        await client.regionWrite32(0, Reg.IC, 0x04);
        await unmask(client);
        gpio.setInput(2, false);
        t.ok((await client.waitForInterrupt(fd!)) >= 1, "both edges: falling");
        t.equal(await client.regionRead32(0, Reg.RIS), 0x04);
        await client.regionWrite32(0, Reg.IC, 0x04);
        await unmask(client);

        // an output the client drives is seen by the detector too
        await configure(h, { is: 0, ibe: 0, iev: 0x08, ie: 0x08 });
        await client.regionWrite32(0, Reg.DIR, 0x08);
        await client.regionWrite32(0, 0x08 << 2, 0x08);
        t.ok((await client.waitForInterrupt(fd!)) >= 1, "a driven output's rising edge");
        t.equal(await client.regionRead32(0, Reg.MIS), 0x08);
      },
    );

    t.test("level interrupts: high and low, not latched, GPIOIC has no effect", async (t) => {
      const h = await servePlatform(pl061, transport);
      t.teardown(h.close);
      const { client, device } = h;
      const [fd] = await client.enableInterrupts(0, 0, 1);
      const gpio = device.behaviour;

      await configure(h, { is: 0x10, ibe: 0, iev: 0x10, ie: 0x10 });
      await sync(client);
      t.equal(client.interruptCount(fd!), 0, "pin 4 is low: a high-level pin is quiet");
      gpio.setInput(4, true);
      t.ok((await client.waitForInterrupt(fd!)) >= 1, "high level raised the line");
      await client.regionWrite32(0, Reg.IC, 0x10);
      t.equal(await client.regionRead32(0, Reg.RIS), 0x10, "GPIOIC does not clear a level");
      await unmask(client);
      t.ok((await client.waitForInterrupt(fd!)) >= 1, "still asserted: unmasking fires again");
      gpio.setInput(4, false);
      t.equal(await client.regionRead32(0, Reg.RIS), 0, "the level went away, so did the status");
      await unmask(client);
      await sync(client);
      t.equal(client.interruptCount(fd!), 0, "nothing after the level dropped");

      // active-low: pin 5 is low, so configuring it is enough to assert
      await configure(h, { is: 0x20, ibe: 0, iev: 0x00, ie: 0x20 });
      t.ok((await client.waitForInterrupt(fd!)) >= 1, "low level raised the line");
      t.equal(await client.regionRead32(0, Reg.MIS), 0x20);
      gpio.setInput(5, true);
      t.equal(await client.regionRead32(0, Reg.MIS), 0);
      t.notOk(gpio.interruptAsserted);
    });

    t.test("a masked pin (GPIOIE=0) raises nothing; unmasking a pending edge raises the line", async (t) => {
      const h = await servePlatform(pl061, transport);
      t.teardown(h.close);
      const { client, device } = h;
      const [fd] = await client.enableInterrupts(0, 0, 1);
      await configure(h, { is: 0, ibe: 0, iev: 0x40, ie: 0x00 });
      device.behaviour.setInput(6, true);
      await sync(client);
      t.equal(client.interruptCount(fd!), 0, "no interrupt");
      t.equal(await client.regionRead32(0, Reg.RIS), 0x40, "but the raw status latched the edge");
      t.equal(await client.regionRead32(0, Reg.MIS), 0);
      t.equal(device.irqs.counters(0, 0).signalled, 0);
      await client.regionWrite32(0, Reg.IE, 0x40);
      t.ok((await client.waitForInterrupt(fd!)) >= 1, "enabling the pending pin raised the line");
      t.equal(device.irqs.counters(0, 0).signalled, 1);
    });

    t.test("DEVICE_RESET returns the registers to their reset values and drops the line", async (t) => {
      const h = await servePlatform(pl061, transport);
      t.teardown(h.close);
      const { client, device } = h;
      await client.enableInterrupts(0, 0, 1);
      await configure(h, { is: 0xff, ibe: 0x0f, iev: 0x00, ie: 0xff });
      t.ok(device.behaviour.interruptAsserted);
      await client.reset();
      for (const reg of [Reg.DIR, Reg.IS, Reg.IBE, Reg.IEV, Reg.IE, Reg.RIS, Reg.MIS, Reg.AFSEL]) {
        t.equal(await client.regionRead32(0, reg), 0, `0x${reg.toString(16)} reads 0 after reset`);
      }
      t.notOk(device.behaviour.interruptAsserted);
      t.notOk(device.irqs.isAsserted(0, 0));
    });
  });
}

t.test("the server-side API and the inputs option", async (t) => {
  const h = await servePlatform(pl061, "memory", { options: { inputs: "0x05" } });
  t.teardown(h.close);
  t.equal(await h.client.regionRead32(0, 0x3fc), 0x05, "--set inputs=0x05");
  t.equal(h.device.behaviour.pins(), 0x05);
  t.throws(() => h.device.behaviour.setInput(8, true), RangeError);
  t.throws(() => h.device.behaviour.setInput(-1, true), RangeError);
  h.device.behaviour.setInputs(0xff, 0x0f);
  t.equal(h.device.behaviour.inputs, 0x0f, "only the pins under the mask changed");
  for (const bad of ["0x100", "-1", "pin3", "1.5"]) {
    await t.rejects(
      servePlatform(pl061, "memory", { options: { inputs: bad } }),
      /device pl061: option inputs=.* is refused \(.*\); it takes integer 0x0-0xff/,
      bad,
    );
  }
});
