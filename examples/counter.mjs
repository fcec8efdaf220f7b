// A counter on a PCI BAR, in plain JavaScript: the smallest device worth serving.
//
//   npx vfu serve ./counter.mjs --socket /tmp/counter.sock [--set limit=5]
//
// BAR0, 4 KiB of 32-bit registers:
//   0x0 COUNT  RO  the count
//   0x4 ADD    WO  add the value written; reaching LIMIT raises the interrupt (MSI when the
//                  driver enabled it, else INTx, held until CLEAR)
//   0x8 LIMIT  RO  the "limit" option
//   0xc CLEAR  WO  any write: count back to 0, interrupt withdrawn
import { definePciDevice, leValue } from "vfio-user-node";

export default definePciDevice({
  name: "counter",
  summary: "a counter that interrupts when it reaches a limit",
  ids: {
    vendor: 0x1234,
    device: 0x0c01,
    subsystemVendor: 0x1234,
    subsystem: 0,
    classCode: 0xff0000, // unassigned class: no Linux driver claims it
    revision: 1,
  },
  bars: [{ index: 0, kind: "memory", size: 0x1000, accessSizes: [4] }],
  capabilities: { msi: { vectors: 1, is64: true } },
  interrupts: { intx: true },
  options: {
    limit: {
      kind: "integer",
      min: 1,
      max: 0xffffffff,
      default: 10,
      description: "count at which to interrupt",
    },
  },
  create(ctx) {
    const limit = ctx.options.limit;
    let count = 0;
    return {
      bars: {
        0: {
          read(offset) {
            if (offset === 0x0) return count;
            if (offset === 0x8) return limit;
            return 0;
          },
          write(offset, data) {
            if (offset === 0x4) {
              const before = count;
              count = (count + leValue(data)) >>> 0;
              if (before < limit && count >= limit) ctx.irq.raise();
            } else if (offset === 0xc) {
              count = 0;
              ctx.irq.lower();
            }
          },
        },
      },
      reset() {
        count = 0;
      },
    };
  },
});
