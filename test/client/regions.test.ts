// 64-bit region accesses and region mappings released through the public client.
import t from "tap";
import { EDU_BAR, Reg as EduReg, edu } from "../../devices/edu/index.ts";
import { gpioIdio16, IDIO16_BAR } from "../../devices/gpio-idio16/index.ts";
import { Bars, MSIX_BAR_SCRATCH, pciTestdev } from "../../devices/pci-testdev/index.ts";
import { Errno } from "../../src/index.ts";
import { NvmeHost } from "../devices/nvme-host.ts";
import { rejection } from "../helpers/harness.ts";
import { servePci } from "./serve-pci.ts";

const BIG = 0x8765_4321_fedc_ba98n;

t.test("pci-testdev: regionWrite64/regionRead64 are one 8-byte access each, little-endian", async (t) => {
  const s = await servePci(pciTestdev);
  await s.client.regionWrite64(Bars.MSIX, MSIX_BAR_SCRATCH, BIG);
  t.equal(await s.client.regionRead64(Bars.MSIX, MSIX_BAR_SCRATCH), BIG);
  t.equal(await s.client.regionRead32(Bars.MSIX, MSIX_BAR_SCRATCH), 0xfedc_ba98, "low half first");
  t.equal(await s.client.regionRead32(Bars.MSIX, MSIX_BAR_SCRATCH + 4), 0x8765_4321);
  await s.client.regionWrite64(Bars.MSIX, MSIX_BAR_SCRATCH + 8, 7, { posted: true });
  t.equal(await s.client.regionRead64(Bars.MSIX, MSIX_BAR_SCRATCH + 8), 7n, "posted, and a number value");
  t.equal(
    await rejection(s.client.regionRead64(Bars.REGS, 0)),
    Errno.EINVAL,
    "BAR 0 takes 4-byte accesses only",
  );
  await t.rejects(s.client.regionWrite64(Bars.MSIX, 0, -1n), RangeError);
  await t.rejects(s.client.regionWrite64(Bars.MSIX, 0, 1n << 64n), /not a 64-bit unsigned value/);
  await s.close();
});

t.test("edu: its 64-bit DMA registers through regionWrite64/regionRead64", async (t) => {
  const s = await servePci(edu);
  await s.client.regionWrite64(EDU_BAR, EduReg.DMA_SRC, 0x1234_5678_9abcn);
  t.equal(await s.client.regionRead64(EDU_BAR, EduReg.DMA_SRC), 0x1234_5678_9abcn);
  await s.close();
});

t.test("gpio-idio16: an 8-byte access to its I/O BAR is refused", async (t) => {
  const s = await servePci(gpioIdio16);
  t.equal(await rejection(s.client.regionRead64(IDIO16_BAR, 0)), Errno.EINVAL);
  t.equal(await rejection(s.client.regionWrite64(IDIO16_BAR, 0, 0n)), Errno.EINVAL);
  await s.close();
});

t.test("nvme: CAP read whole, ASQ written and read back as 64-bit registers", async (t) => {
  const h = await NvmeHost.start({ size: "1M" });
  t.teardown(async () => {
    await h.stop();
    h.cleanup();
  });
  const cap = await h.client.regionRead64(0, 0x00);
  const lo = await h.client.regionRead32(0, 0x00);
  const hi = await h.client.regionRead32(0, 0x04);
  t.equal(cap, (BigInt(hi) << 32n) | BigInt(lo), "CAP as one access equals its halves");
  await h.client.regionWrite64(0, 0x28, 0x1_2345_6000n);
  t.equal(await h.client.regionRead64(0, 0x28), 0x1_2345_6000n, "ASQ");
});

t.test(
  "region mappings are released through the client: unmap(), client.unmap(bytes), close()",
  async (t) => {
    const s = await servePci(pciTestdev);
    const ram = s.device.region(Bars.RAM)!.memory!;
    const view = await s.client.mmapView(Bars.RAM);
    view.bytes[3] = 0x77;
    t.equal(ram[3], 0x77, "a store through the view reaches the device");
    view.unmap();
    t.equal(view.unmapped, true);
    t.equal(view.bytes.length, 0, "the unmapped view reads as empty");
    t.equal(s.client.unmap(view), false, "a second release does nothing");
    view.unmap();

    const whole = await s.client.mmapRegion(Bars.RAM);
    t.equal(whole[3], 0x77);
    t.equal(s.client.unmap(whole), true, "client.unmap takes mmapRegion's bytes");
    t.equal(whole.length, 0);
    t.equal(s.client.unmap(whole), false);
    t.equal(s.client.unmap(new Uint8Array(4)), false, "bytes that are no mapping of the client");

    const left = await s.client.mmapRegion(Bars.RAM);
    const leftView = await s.client.mmapView(Bars.RAM);
    await s.close();
    t.equal(left.length, 0, "close() unmaps what is left");
    t.equal(leftView.unmapped, true);
  },
);
