// describeMessage: the one-line form of every command family, requests and replies, as `vfu
// --verbose` prints them; malformed bodies are described as far as they go, never thrown on.
import t from "tap";
import {
  Command,
  DeviceFlag,
  DmaMapFlag,
  DmaUnmapFlag,
  describeMessage,
  describeMessageBytes,
  Errno,
  encodeDeviceInfo,
  encodeDmaMap,
  encodeDmaRead,
  encodeDmaReadReply,
  encodeDmaUnmap,
  encodeDmaWrite,
  encodeErrorReply,
  encodeIrqInfo,
  encodeMessage,
  encodeRegionInfoReply,
  encodeRegionRead,
  encodeRegionReadReply,
  encodeRegionWrite,
  encodeRegionWriteMulti,
  encodeRegionWriteReply,
  encodeSetIrqs,
  encodeVersion,
  FeatureFlag,
  HeaderFlag,
  IrqInfoFlag,
  IrqSetFlag,
  RegionFlag,
} from "../../protocol/index.ts";

const cmd = (command: number, body: Uint8Array | null, msgId = 7, flags: number = HeaderFlag.COMMAND) =>
  encodeMessage({ msgId, command, flags }, body);
const reply = (command: number, body: Uint8Array | null, msgId = 7) =>
  encodeMessage({ msgId, command, flags: HeaderFlag.REPLY }, body);

t.test("region accesses: region, offset, count, and the value of accesses up to 8 bytes", async (t) => {
  t.equal(
    describeMessageBytes(cmd(Command.REGION_READ, encodeRegionRead({ offset: 0x10n, region: 2, count: 4 }))),
    "REGION_READ id=7 region=2 offset=0x10 count=4",
  );
  t.equal(
    describeMessageBytes(
      reply(
        Command.REGION_READ,
        encodeRegionReadReply({
          offset: 0x10n,
          region: 2,
          count: 4,
          data: Uint8Array.of(0x78, 0x56, 0x34, 0x12),
        }),
      ),
    ),
    "REGION_READ reply id=7 region=2 offset=0x10 count=4 value=0x12345678",
  );
  t.equal(
    describeMessageBytes(
      cmd(
        Command.REGION_WRITE,
        encodeRegionWrite({ offset: 4n, region: 0, count: 1, data: Uint8Array.of(0x2a) }),
        9,
        HeaderFlag.COMMAND | HeaderFlag.NO_REPLY,
      ),
    ),
    "REGION_WRITE id=9 no-reply region=0 offset=0x4 count=1 value=0x2a",
  );
  const eight = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
  t.equal(
    describeMessageBytes(
      cmd(Command.REGION_WRITE, encodeRegionWrite({ offset: 0n, region: 4, count: 8, data: eight })),
    ),
    "REGION_WRITE id=7 region=4 offset=0x0 count=8 value=0x0807060504030201",
  );
  t.equal(
    describeMessageBytes(
      cmd(
        Command.REGION_WRITE,
        encodeRegionWrite({ offset: 0n, region: 4, count: 9, data: new Uint8Array(9) }),
      ),
    ),
    "REGION_WRITE id=7 region=4 offset=0x0 count=9",
    "no value over 8 bytes",
  );
  t.equal(
    describeMessageBytes(
      reply(Command.REGION_WRITE, encodeRegionWriteReply({ offset: 4n, region: 0, count: 1 })),
    ),
    "REGION_WRITE reply id=7 region=0 offset=0x4 count=1",
  );
  t.equal(
    describeMessageBytes(
      cmd(
        Command.REGION_WRITE_MULTI,
        encodeRegionWriteMulti(
          Array.from({ length: 6 }, (_, i) => ({
            offset: BigInt(i * 4),
            region: 0,
            count: 4,
            data: Uint8Array.of(i, 0, 0, 0),
          })),
        ),
      ),
    ),
    "REGION_WRITE_MULTI id=7 writes=6 [region=0 offset=0x0 count=4 value=0x00000000] " +
      "[region=0 offset=0x4 count=4 value=0x00000001] [region=0 offset=0x8 count=4 value=0x00000002] " +
      "[region=0 offset=0xc count=4 value=0x00000003] +2 more",
  );
});

t.test("DMA_MAP: iova, size, prot and the fd or none; DMA_UNMAP; DMA_READ/DMA_WRITE", async (t) => {
  const map = encodeDmaMap({
    argsz: 32,
    flags: DmaMapFlag.READ | DmaMapFlag.WRITE,
    offset: 0n,
    addr: 0x100000n,
    size: 0x10000n,
  });
  t.equal(
    describeMessageBytes(cmd(Command.DMA_MAP, map), { fds: [17] }),
    "DMA_MAP id=7 iova=0x100000 size=0x10000 prot=rw offset=0x0 fd=17",
  );
  const rom = encodeDmaMap({
    argsz: 32,
    flags: DmaMapFlag.READ,
    offset: 0n,
    addr: 0xfffc0000n,
    size: 0x40000n,
  });
  t.equal(
    describeMessageBytes(cmd(Command.DMA_MAP, rom)),
    "DMA_MAP id=7 iova=0xfffc0000 size=0x40000 prot=r- offset=0x0 fd=none",
  );
  t.equal(describeMessageBytes(reply(Command.DMA_MAP, null)), "DMA_MAP reply id=7");
  t.equal(
    describeMessageBytes(
      cmd(Command.DMA_UNMAP, encodeDmaUnmap({ argsz: 24, flags: 0, addr: 0x100000n, size: 0x10000n })),
    ),
    "DMA_UNMAP id=7 iova=0x100000 size=0x10000",
  );
  t.equal(
    describeMessageBytes(
      cmd(Command.DMA_UNMAP, encodeDmaUnmap({ argsz: 24, flags: DmaUnmapFlag.ALL, addr: 0n, size: 0n })),
    ),
    "DMA_UNMAP id=7 iova=0x0 size=0x0 flags=all",
  );
  t.equal(
    describeMessageBytes(cmd(Command.DMA_READ, encodeDmaRead({ addr: 0x2000n, count: 4 }), 3)),
    "DMA_READ id=3 iova=0x2000 count=4",
  );
  t.equal(
    describeMessageBytes(
      reply(Command.DMA_READ, encodeDmaReadReply({ addr: 0x2000n, count: 2, data: Uint8Array.of(1, 2) }), 3),
    ),
    "DMA_READ reply id=3 iova=0x2000 count=2 value=0x0201",
  );
  const qemu = encodeDmaWrite({ addr: 0x3000n, count: 1, data: Uint8Array.of(0xff) }, "qemu-10.1");
  t.equal(
    describeMessageBytes(cmd(Command.DMA_WRITE, qemu, 4), { dmaLayout: "qemu-10.1" }),
    "DMA_WRITE id=4 iova=0x3000 count=1 value=0xff",
    "the QEMU 10.1 layout when told",
  );
});

t.test("SET_IRQS: index, start, count, action and data type; IRQ info", async (t) => {
  const set = encodeSetIrqs({
    argsz: 20,
    flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER,
    index: 2,
    start: 0,
    count: 2,
    data: null,
  });
  t.equal(
    describeMessageBytes(cmd(Command.DEVICE_SET_IRQS, set), { fds: [20, 21] }),
    "DEVICE_SET_IRQS id=7 index=2 start=0 count=2 action=trigger data=eventfd fds=20,21",
  );
  const mask = encodeSetIrqs({
    argsz: 22,
    flags: IrqSetFlag.DATA_BOOL | IrqSetFlag.ACTION_MASK,
    index: 1,
    start: 3,
    count: 2,
    data: Uint8Array.of(1, 0),
  });
  t.equal(
    describeMessageBytes(cmd(Command.DEVICE_SET_IRQS, mask)),
    "DEVICE_SET_IRQS id=7 index=1 start=3 count=2 action=mask data=bool bools=10",
  );
  const none = encodeSetIrqs({
    argsz: 20,
    flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER,
    index: 0,
    start: 0,
    count: 0,
    data: null,
  });
  t.equal(
    describeMessageBytes(cmd(Command.DEVICE_SET_IRQS, none)),
    "DEVICE_SET_IRQS id=7 index=0 start=0 count=0 action=trigger data=none",
  );
  t.equal(
    describeMessageBytes(
      reply(
        Command.DEVICE_GET_IRQ_INFO,
        encodeIrqInfo({ argsz: 16, flags: IrqInfoFlag.EVENTFD | IrqInfoFlag.NORESIZE, index: 2, count: 8 }),
      ),
    ),
    "DEVICE_GET_IRQ_INFO reply id=7 index=2 count=8 flags=eventfd,noresize",
  );
});

t.test("negotiation, device and region info, reset, features", async (t) => {
  const caps = '{"capabilities":{"max_msg_fds":8}}';
  t.equal(
    describeMessageBytes(cmd(Command.VERSION, encodeVersion({ major: 0, minor: 0, json: caps }), 0)),
    `VERSION id=0 version=0.0 caps=${caps}`,
  );
  t.equal(
    describeMessageBytes(
      reply(
        Command.DEVICE_GET_INFO,
        encodeDeviceInfo({ argsz: 16, flags: DeviceFlag.PCI | DeviceFlag.RESET, numRegions: 9, numIrqs: 5 }),
      ),
    ),
    "DEVICE_GET_INFO reply id=7 flags=reset,pci regions=9 irqs=5",
  );
  t.equal(
    describeMessageBytes(
      reply(
        Command.DEVICE_GET_REGION_INFO,
        encodeRegionInfoReply(
          {
            flags: RegionFlag.READ | RegionFlag.WRITE | RegionFlag.MMAP,
            index: 2,
            size: 0x10000n,
            offset: 0x20000n,
            caps: [],
          },
          32,
        ),
      ),
      { fds: [30] },
    ),
    "DEVICE_GET_REGION_INFO reply id=7 region=2 size=0x10000 flags=read,write,mmap offset=0x20000 fd=30",
  );
  t.equal(describeMessageBytes(cmd(Command.DEVICE_RESET, null)), "DEVICE_RESET id=7");
  const feature = new Uint8Array(8);
  new DataView(feature.buffer).setUint32(0, 8, true);
  new DataView(feature.buffer).setUint32(4, FeatureFlag.PROBE | FeatureFlag.GET | 1, true);
  t.equal(
    describeMessageBytes(cmd(Command.DEVICE_FEATURE, feature)),
    "DEVICE_FEATURE id=7 feature=1 op=get,probe",
  );
});

t.test("error replies name the errno; malformed bodies say where they end; nothing throws", async (t) => {
  t.equal(
    describeMessageBytes(encodeErrorReply(12, Command.REGION_READ, Errno.EINVAL)),
    "REGION_READ reply id=12 error=EINVAL",
  );
  t.equal(
    describeMessageBytes(cmd(Command.DMA_MAP, new Uint8Array(12))),
    "DMA_MAP id=7 (body ends at 12 bytes)",
  );
  t.equal(
    describeMessageBytes(cmd(Command.REGION_WRITE, encodeRegionRead({ offset: 0n, region: 1, count: 4 }))),
    "REGION_WRITE id=7 region=1 offset=0x0 count=4 (body ends at 16 bytes)",
    "a write whose data is missing",
  );
  t.equal(describeMessageBytes(cmd(999, Uint8Array.of(1, 2, 3))), "UNKNOWN(999) id=7 bytes=3");
  t.equal(describeMessageBytes(new Uint8Array(5)), "(5 bytes: no whole header)");
  t.equal(
    describeMessage(
      { msgId: 1, command: Command.REGION_READ, msgSize: 16, flags: 0x3, error: 0 },
      new Uint8Array(0),
    ),
    "REGION_READ type=3 id=1 (body ends at 0 bytes)",
  );
  // Random bodies for every command, both directions: a description, never an exception.
  let seed = 1;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  for (let command = 0; command <= 17; command++) {
    for (let i = 0; i < 50; i++) {
      const body = Uint8Array.from({ length: rand() % 64 }, () => rand() & 0xff);
      const flags = rand() & 1 ? HeaderFlag.REPLY : HeaderFlag.COMMAND;
      const line = describeMessage({ msgId: i, command, msgSize: 16 + body.length, flags, error: 0 }, body);
      if (typeof line !== "string" || line.length === 0) t.fail(`command ${command}: ${line}`);
    }
  }
  t.pass("random bodies described");
});
