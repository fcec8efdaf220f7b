// The project's cache capability (VFU_REGION_INFO_CAP_CACHE, 0x8C01) in DEVICE_GET_REGION_INFO:
// byte-exact against a fixture written field by field from the layout in the codec's header and
// the README, decoding through the ordinary capability chain, and its refusals.
import t from "tap";
import {
  decodeRegionCacheCap,
  decodeRegionInfoReply,
  Errno,
  encodeRegionCacheCap,
  encodeRegionInfoReply,
  ProtocolError,
  REGION_CACHE_CAP_VERSION,
  type RegionCacheInfo,
  RegionCapId,
  RegionFlag,
  VFU_REGION_INFO_CAP_CACHE,
} from "../../protocol/index.ts";
import { hex, toHex } from "../fixtures/protocol/helpers.ts";

const h = (...parts: string[]): string => parts.join("").replace(/\s/g, "");

// A 64 KiB BAR whose [0x1000, 0x3000) may be mapped WC (the default) or UC; trapped writes combine.
const fixture = h(
  "90000000", // argsz 144 = 32 + 32 (SPARSE_MMAP, 1 area) + 80 (cache cap, 2 views)
  "0f000000", // flags READ | WRITE | MMAP | CAPS
  "00000000", // index 0
  "20000000", // cap_offset 32
  "0000010000000000", // size 0x10000
  "0000000000000000", // offset 0
  // @32 SPARSE_MMAP
  "0100 0100 40000000", // id 1, version 1, next 64
  "01000000 00000000", // nr_areas 1, reserved
  "0010000000000000 0020000000000000", // area {0x1000, 0x2000}
  // @64 VFU_REGION_INFO_CAP_CACHE
  "018c 0100 00000000", // id 0x8C01, version 1, next 0 (end)
  "01", // trapped accesses: WC
  "01", // flags: COMBINES
  "0200", // nr_views 2
  "00000000", // reserved
  // view 0
  "0010000000000000", // offset 0x1000
  "0020000000000000", // size 0x2000
  "0010000000000000", // cookie: fd offset 0x1000
  "01 01 0000 00000000", // cache WC, flags DEFAULT, area 0, reserved
  // view 1
  "0010000000000000 0020000000000000 0010000000000000",
  "00 00 0000 00000000", // cache UC, not default, area 0
);

const info: RegionCacheInfo = {
  cache: "WC",
  combines: true,
  views: [
    { offset: 0x1000n, size: 0x2000n, cookie: 0x1000n, cache: "WC", isDefault: true, area: 0 },
    { offset: 0x1000n, size: 0x2000n, cookie: 0x1000n, cache: "UC", isDefault: false, area: 0 },
  ],
};

t.test("the id sits outside VFIO's sequence", async (t) => {
  t.equal(VFU_REGION_INFO_CAP_CACHE, 0x8c01);
  t.equal(REGION_CACHE_CAP_VERSION, 1);
  for (const id of Object.values(RegionCapId)) t.not(id, VFU_REGION_INFO_CAP_CACHE);
  t.ok(VFU_REGION_INFO_CAP_CACHE & 0x8000, "top bit set");
});

t.test("encodes byte for byte as the fixture, and decodes back", async (t) => {
  const reply = encodeRegionInfoReply(
    {
      flags: RegionFlag.READ | RegionFlag.WRITE | RegionFlag.MMAP,
      index: 0,
      size: 0x10000n,
      offset: 0n,
      caps: [
        { id: RegionCapId.SPARSE_MMAP, version: 1, areas: [{ offset: 0x1000n, size: 0x2000n }] },
        encodeRegionCacheCap(info),
      ],
    },
    144,
  );
  t.equal(toHex(reply), fixture);
  const decoded = decodeRegionInfoReply(hex(fixture));
  t.equal(decoded.caps.length, 2);
  t.same(decoded.caps[0], { id: 1, version: 1, areas: [{ offset: 0x1000n, size: 0x2000n }] });
  const raw = decoded.caps[1]!;
  t.equal(raw.id, VFU_REGION_INFO_CAP_CACHE);
  t.ok("data" in raw, "the generic chain decoder keeps unknown ids as raw bytes");
  t.same(decodeRegionCacheCap(raw as { version: number; data: Uint8Array }), info);
});

t.test("a trapped region with no views is 16 bytes", async (t) => {
  const cap = encodeRegionCacheCap({ cache: "UC", combines: false, views: [] });
  t.equal(toHex(cap.data), h("00 00 0000 00000000"));
  t.same(decodeRegionCacheCap(cap), { cache: "UC", combines: false, views: [] });
  const wb = encodeRegionCacheCap({ cache: "WB", combines: true, views: [] });
  t.equal(toHex(wb.data), h("02 01 0000 00000000"));
});

t.test("the argsz retry rule holds with the capability in the chain", async (t) => {
  const input = {
    flags: RegionFlag.READ | RegionFlag.MMAP,
    index: 2,
    size: 0x4000n,
    offset: 0n,
    caps: [encodeRegionCacheCap(info)],
  };
  const short = encodeRegionInfoReply(input, 32);
  t.equal(short.length, 32);
  const d = decodeRegionInfoReply(short);
  t.equal(d.argsz, 32 + 16 + 64);
  t.equal(d.caps.length, 0);
  t.equal(d.flags & RegionFlag.CAPS, 0);
  t.equal(encodeRegionInfoReply(input, d.argsz).length, d.argsz);
});

t.test("refusals: short bodies and bad attribute codes; other versions are not decoded", async (t) => {
  const body = hex(fixture).slice(64 + 8); // the cache cap's bytes after its header
  const errno = (f: () => unknown) => {
    try {
      f();
      return null;
    } catch (e) {
      return e instanceof ProtocolError ? e.errno : -1;
    }
  };
  t.equal(decodeRegionCacheCap({ version: 2, data: body }), null, "version 2: unknown, ignored");
  t.equal(
    errno(() => decodeRegionCacheCap({ version: 1, data: body.slice(0, 7) })),
    Errno.EINVAL,
  );
  t.equal(
    errno(() => decodeRegionCacheCap({ version: 1, data: body.slice(0, 8 + 32 + 31) })),
    Errno.EINVAL,
  );
  const badView = body.slice();
  badView[8 + 24] = 3;
  t.equal(
    errno(() => decodeRegionCacheCap({ version: 1, data: badView })),
    Errno.EINVAL,
  );
  const badRegion = body.slice();
  badRegion[0] = 7;
  t.equal(
    errno(() => decodeRegionCacheCap({ version: 1, data: badRegion })),
    Errno.EINVAL,
  );
  t.throws(() => encodeRegionCacheCap({ cache: "XX" as "UC", combines: false, views: [] }), RangeError);
});
