// Bus Master Enable gates a PCI function's DMA, through the client: the PCI layer wires
// Command.Bus Master to ctx.dma's gate, so with the bit clear every DMA the model starts faults
// "bus-master-off" (typed, counted, logged, and no DMA_READ/DMA_WRITE reaches the client); with
// the bit set the same DMA goes through. A reset puts Command back to 0 and closes the gate again.
//
// The model is a small test-only PCI function with one DMA engine: it copies between client
// memory and a 256-byte buffer, started by a register write and run after the write's reply (as a
// device model must: README, Writing a device).

import t from "tap";
import { Errno } from "../../protocol/index.ts";
import {
  createMemoryPair,
  DeviceDma,
  type DmaApi,
  DmaFault,
  definePciDevice,
  MemorySink,
  PciCommand,
  PciDevice,
  PciHeader,
  PciRegion,
  SinkLogger,
  serveConnection,
  VfioUserClient,
} from "../../src/index.ts";

const Reg = {
  ADDR_LO: 0x00,
  ADDR_HI: 0x04,
  LEN: 0x08,
  GO: 0x0c, //     1: client memory -> buffer, 2: buffer -> client memory
  STATUS: 0x10, // 0 idle, 1 busy, 2 done, 3 fault
  ERRNO: 0x14, //  the fault's errno
} as const;
const Go = { READ: 1, WRITE: 2 } as const;
const Status = { IDLE: 0, BUSY: 1, DONE: 2, FAULT: 3 } as const;

let deviceDma: DmaApi | null = null;
let lastFaultKind = "";

const probe = definePciDevice({
  name: "bus-master-probe",
  summary: "test only: one DMA engine behind a register",
  ids: { vendor: 0x1234, device: 0x0b0b, classCode: 0xff0000 },
  bars: [{ index: 0, kind: "memory", size: 0x1000, accessSizes: [4] }],
  create(ctx) {
    deviceDma = ctx.dma;
    const buf = new Uint8Array(256);
    const r = { lo: 0, hi: 0, len: 0, status: 0, errno: 0 };
    const run = async (op: number): Promise<void> => {
      const iova = (BigInt(r.hi) << 32n) | BigInt(r.lo);
      const len = Math.min(r.len, buf.length);
      try {
        if (op === Go.READ) buf.set(await ctx.dma.read(iova, len));
        else await ctx.dma.write(iova, buf.slice(0, len));
        r.status = Status.DONE;
      } catch (err) {
        if (!(err instanceof DmaFault)) throw err;
        lastFaultKind = err.kind;
        r.errno = err.errno;
        r.status = Status.FAULT;
      }
    };
    return {
      bars: {
        0: {
          read(offset) {
            if (offset === Reg.STATUS) return r.status;
            if (offset === Reg.ERRNO) return r.errno;
            if (offset === 0x100) return buf[0]! | (buf[1]! << 8) | (buf[2]! << 16) | (buf[3]! << 24);
            return 0;
          },
          write(offset, data) {
            const v = new DataView(data.buffer, data.byteOffset, 4).getUint32(0, true);
            if (offset === Reg.ADDR_LO) r.lo = v;
            else if (offset === Reg.ADDR_HI) r.hi = v;
            else if (offset === Reg.LEN) r.len = v;
            else if (offset === Reg.GO && r.status !== Status.BUSY) {
              r.status = Status.BUSY;
              r.errno = 0;
              // After the reply: never wait for the client inside its own request.
              setImmediate(() => void run(v));
            } else if (offset === 0x100) new DataView(buf.buffer).setUint32(0, v, true);
          },
        },
      },
      reset() {
        buf.fill(0);
        Object.assign(r, { lo: 0, hi: 0, len: 0, status: 0, errno: 0 });
      },
    };
  },
});

async function setup() {
  const [a, b] = createMemoryPair();
  const sink = new MemorySink();
  const log = new SinkLogger(sink, "debug");
  const dma = new DeviceDma(log);
  let device: PciDevice | undefined;
  const session = serveConnection(
    b,
    (d, l) => {
      device = new PciDevice(probe, { dma: d, log: l });
      return device;
    },
    { log, dma },
  );
  const client = await VfioUserClient.over(a);
  const w32 = (offset: number, v: number) => client.regionWrite32(0, offset, v);
  const command = async () => {
    const d = await client.regionRead(PciRegion.CONFIG, PciHeader.COMMAND, 2);
    return d[0]! | (d[1]! << 8);
  };
  const setCommand = async (v: number) => {
    const d = new Uint8Array(2);
    new DataView(d.buffer).setUint16(0, v, true);
    await client.regionWrite(PciRegion.CONFIG, PciHeader.COMMAND, d);
  };
  /** Program and start one transfer; resolve with [status, errno] once it has finished. */
  const transfer = async (iova: bigint, len: number, op: number): Promise<[number, number]> => {
    await w32(Reg.ADDR_LO, Number(iova & 0xffff_ffffn));
    await w32(Reg.ADDR_HI, Number(iova >> 32n));
    await w32(Reg.LEN, len);
    await w32(Reg.GO, op);
    for (let i = 0; i < 200; i++) {
      const s = await client.regionRead32(0, Reg.STATUS);
      if (s !== Status.BUSY) return [s, await client.regionRead32(0, Reg.ERRNO)];
      await new Promise((r) => setTimeout(r, 1));
    }
    throw new Error("the transfer never finished");
  };
  return {
    client,
    dma,
    sink,
    device: () => device!,
    command,
    setCommand,
    transfer,
    async close() {
      client.close();
      await session.ended;
      device?.dispose();
    },
  };
}

for (const backing of ["fd", "message"] as const) {
  t.test(`${backing}-backed client memory: DMA is refused while Bus Master is off`, async (t) => {
    const h = await setup();
    const mem =
      backing === "fd"
        ? await h.client.mapMemory(0x10000n, 0x1000)
        : await h.client.mapMessageMemory(0x10000n, 0x1000);
    mem.bytes.set([0xde, 0xad, 0xbe, 0xef], 0x80);
    t.equal(deviceDma, h.dma, "the model's ctx.dma is the session's DeviceDma");
    t.equal((await h.command()) & PciCommand.MASTER, 0, "Bus Master is off at power-on");
    t.equal(h.dma.gateOpen, false, "so the gate is closed");

    t.same(
      await h.transfer(0x10080n, 4, Go.READ),
      [Status.FAULT, Errno.ENODEV],
      "a read faults, errno ENODEV",
    );
    t.equal(lastFaultKind, "bus-master-off", "with the fault kind bus-master-off");
    t.same(await h.transfer(0x10000n, 4, Go.WRITE), [Status.FAULT, Errno.ENODEV], "a write faults too");
    t.equal(h.dma.faultCounts["bus-master-off"], 2, "both counted");
    t.equal(h.dma.faults, 2, "and nothing else");
    t.match(h.sink.text(), /DMA fault \(bus-master-off\) at 0x10080\+4/, "and logged");
    t.same(h.client.dmaServed, { reads: 0, writes: 0, errors: 0 }, "no DMA message reached the client");
    t.same([...mem.bytes.subarray(0, 4)], [0, 0, 0, 0], "client memory untouched");
    t.throws(
      () => h.dma.view(0x10000n, 4),
      { name: "DmaFault", message: /bus-master-off/ },
      "a view is refused",
    );
    t.throws(
      () => h.dma.sg(0x10000n, 4),
      { name: "DmaFault", message: /bus-master-off/ },
      "and a scatter-gather list",
    );

    await h.setCommand(PciCommand.MEMORY | PciCommand.MASTER);
    t.equal(h.dma.gateOpen, true, "the driver sets Bus Master: the gate opens");
    t.same(await h.transfer(0x10080n, 4, Go.READ), [Status.DONE, 0], "the read goes through");
    t.equal(await h.client.regionRead32(0, 0x100), 0xefbeadde, "and brought the client's bytes");
    t.same(await h.transfer(0x10000n, 4, Go.WRITE), [Status.DONE, 0], "the write goes through");
    t.same([...mem.bytes.subarray(0, 4)], [0xde, 0xad, 0xbe, 0xef], "and reached client memory");
    if (backing === "message") t.same(h.client.dmaServed, { reads: 1, writes: 1, errors: 0 });
    t.equal(h.dma.faults, 4, "no new fault (two transfers, a view, a list so far)");

    await h.setCommand(PciCommand.MEMORY);
    t.same(
      await h.transfer(0x10080n, 4, Go.READ),
      [Status.FAULT, Errno.ENODEV],
      "Bus Master cleared: refused again",
    );
    t.equal(h.dma.faultCounts["bus-master-off"], 5);

    await h.setCommand(PciCommand.MEMORY | PciCommand.MASTER);
    await h.client.reset();
    t.equal((await h.command()) & PciCommand.MASTER, 0, "DEVICE_RESET puts Command back to 0");
    t.same(
      await h.transfer(0x10080n, 4, Go.READ),
      [Status.FAULT, Errno.ENODEV],
      "so DMA is refused after a reset",
    );
    await h.close();
  });
}

t.test("the gate reads the live register: a view taken with Bus Master on is not revoked", async (t) => {
  const h = await setup();
  const mem = await h.client.mapMemory(0x10000n, 0x1000);
  await h.setCommand(PciCommand.MASTER);
  const view = h.dma.view(0x10000n, 16, "rw");
  await h.setCommand(0);
  view.bytes[0] = 0x5a;
  t.equal(mem.bytes[0], 0x5a, "the device may still finish with a view it holds (it must drop it itself)");
  await t.rejects(
    h.dma.read(0x10000n, 1),
    { name: "DmaFault", message: /bus-master-off/ },
    "but new DMA is refused",
  );
  view.release();
  await h.close();
});
