// enableMsi/enableMsix on the public client: the config bits and table entries a driver would set,
// vectors bound to eventfds that fire when the device raises them, the errors for a device
// without the capability or a vector count it cannot take, and disable().
import t from "tap";
import { EDU_BAR, Reg as EduReg, edu } from "../../devices/edu/index.ts";
import { gpioIdio16 } from "../../devices/gpio-idio16/index.ts";
import { Bars, MSI_VECTORS, MSIX_VECTORS, pciTestdev, Reg } from "../../devices/pci-testdev/index.ts";
import { Errno, MsiCap, MsiControl, MsixCap, MsixControl, MsixEntry } from "../../src/index.ts";
import { openFdCount } from "../../src/util/fds.ts";
import { NvmeHost } from "../devices/nvme-host.ts";
import { rejection } from "../helpers/harness.ts";
import { servePci } from "./serve-pci.ts";

const IRQ_MODE = { none: 0, intx: 1, msi: 2, msix: 3 } as const;

t.test(
  "pci-testdev MSI: Multiple Message Enable, vectors unmasked, each vector on its eventfd",
  async (t) => {
    const s = await servePci(pciTestdev);
    const fdsBefore = openFdCount();
    const msi = await s.client.enableMsi({ vectors: MSI_VECTORS });
    t.equal(msi.kind, "msi");
    t.equal(msi.fds.length, MSI_VECTORS);
    t.equal(msi.capability, s.device.pci.msi!.offset);
    const control = await s.client.configRead(msi.capability + MsiCap.CONTROL, 2);
    t.equal(control & MsiControl.ENABLE, MsiControl.ENABLE, "MSI Enable");
    t.equal(
      (control & MsiControl.MME_MASK) >> 4,
      Math.log2(MSI_VECTORS),
      "Multiple Message Enable: 4 vectors",
    );
    t.equal(s.device.pci.msi!.maskBits, 0, "the per-vector Mask bits cleared");
    t.equal(await s.client.regionRead32(Bars.REGS, Reg.IRQ_MODE), IRQ_MODE.msi, "the device routes to MSI");
    for (const v of [2, 0, 3]) {
      await s.client.regionWrite32(Bars.REGS, Reg.RAISE, v);
      t.equal(await msi.wait(v), 1, `vector ${v} fired`);
    }
    t.equal(msi.count(1), 0, "vector 1 did not");
    t.throws(() => msi.count(4), /msi vector 4 is not enabled \(4 are\)/);
    await msi.disable();
    const after = await s.client.configRead(msi.capability + MsiCap.CONTROL, 2);
    t.equal(after & MsiControl.ENABLE, 0, "disable() clears MSI Enable");
    t.equal(await s.client.regionRead32(Bars.REGS, Reg.IRQ_MODE), IRQ_MODE.intx, "back to INTx");
    t.equal(openFdCount(), fdsBefore, "and closes the eventfds");
    await s.close();
  },
);

t.test("MSI vector counts a device cannot take, and devices without the capabilities", async (t) => {
  const s = await servePci(pciTestdev);
  await t.rejects(s.client.enableMsi({ vectors: 3 }), /MSI vectors 3: a power of two from 1 to 4/);
  await t.rejects(s.client.enableMsi({ vectors: 8 }), RangeError);
  await t.rejects(s.client.enableMsix({ vectors: MSIX_VECTORS + 1 }), /from 1 to the table size, 8/);
  await t.rejects(s.client.enableMsix({ vectors: 0 }), RangeError);
  await s.close();
  const g = await servePci(gpioIdio16);
  t.equal(await rejection(g.client.enableMsi()), Errno.ENODEV, "gpio-idio16: no MSI");
  await t.rejects(g.client.enableMsix(), /the config space has no MSI-X capability/);
  await g.close();
  const e = await servePci(edu);
  t.equal(await rejection(e.client.enableMsix()), Errno.ENODEV, "edu: no MSI-X");
  await e.close();
});

t.test("edu MSI: the one vector fires for IRQ_RAISE", async (t) => {
  const s = await servePci(edu);
  const msi = await s.client.enableMsi();
  t.equal(msi.fds.length, 1, "every capable vector: 1");
  await s.client.regionWrite32(EDU_BAR, EduReg.IRQ_RAISE, 0x10);
  t.equal(await msi.wait(0), 1);
  await s.close();
});

t.test(
  "pci-testdev MSI-X: Enable set, Function Mask clear, every table entry programmed and unmasked",
  async (t) => {
    const s = await servePci(pciTestdev);
    const msix = await s.client.enableMsix();
    t.equal(msix.kind, "msix");
    t.equal(msix.fds.length, MSIX_VECTORS, "the whole table");
    const control = await s.client.configRead(msix.capability + MsixCap.CONTROL, 2);
    t.equal(control & (MsixControl.ENABLE | MsixControl.FUNCTION_MASK), MsixControl.ENABLE);
    for (let v = 0; v < MSIX_VECTORS; v++) {
      const entry = v * MsixEntry.SIZE;
      t.equal(await s.client.regionRead32(Bars.MSIX, entry + MsixEntry.DATA), v, `entry ${v}: data`);
      t.equal(
        await s.client.regionRead32(Bars.MSIX, entry + MsixEntry.VECTOR_CONTROL),
        0,
        `entry ${v}: unmasked`,
      );
    }
    t.equal(await s.client.regionRead32(Bars.REGS, Reg.IRQ_MODE), IRQ_MODE.msix);
    for (const v of [7, 1]) {
      await s.client.regionWrite32(Bars.REGS, Reg.RAISE, v);
      t.equal(await msix.wait(v), 1, `vector ${v} fired`);
    }
    await t.rejects(
      msix.wait(3, 30),
      /no interrupt on eventfd \d+ within 30 ms/,
      "a vector not raised times out",
    );
    await msix.disable();
    t.equal(await s.client.regionRead32(Bars.REGS, Reg.IRQ_MODE), IRQ_MODE.intx, "disable() ends MSI-X");
    await s.close();
  },
);

t.test(
  "nvme MSI-X: 17 vectors bound in SET_IRQS of max_msg_fds each; the last fires for its queue",
  async (t) => {
    const h = await NvmeHost.ready(t);
    const msix = await h.client.enableMsix();
    t.equal(msix.fds.length, 17, "admin + 16 I/O vectors");
    t.ok(
      h.client.serverCaps.maxMsgFds < 17,
      `more than one message's worth (${h.client.serverCaps.maxMsgFds})`,
    );
    await h.createQueues(1, 16, { iv: 16, ien: true });
    const c = await h.rw(1, false, 0, 1, 0x20_0000);
    t.equal(c.status, 0);
    t.ok((await msix.wait(16)) >= 1, "vector 16 (bound by the third SET_IRQS) fired for CQ 1");
  },
);
