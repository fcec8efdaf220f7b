// DEVICE_GET_REGION_INFO: the capability chain (sparse mmap, type, MSI-X mappable, unknown), the
// argsz retry rule, and a chain walker that refuses loops and overruns.

import t from "tap";
import {
  decodeRegionInfo,
  decodeRegionInfoReply,
  Errno,
  encodeRegionInfo,
  encodeRegionInfoReply,
  type RegionCap,
  RegionFlag,
  regionCapsLength,
} from "../../protocol/index.ts";
import * as fx from "../fixtures/protocol/hand-built.ts";
import { hex, shorten, throwsErrno, toHex, withU32 } from "../fixtures/protocol/helpers.ts";

const bar0Caps: RegionCap[] = [
  {
    id: 1,
    version: 1,
    areas: [
      { offset: 0n, size: 0x1000n },
      { offset: 0x2000n, size: 0xe000n },
    ],
  },
  { id: 2, version: 1, type: 0x80000000, subtype: 5 },
  { id: 3, version: 1 },
  { id: 0x99, version: 2, data: hex("01020304") },
];
const bar0 = {
  flags: RegionFlag.READ | RegionFlag.WRITE | RegionFlag.MMAP,
  index: 0,
  size: 0x10000n,
  offset: 0x10000n,
  caps: bar0Caps,
};

t.test("requests", async (t) => {
  for (const [f, argsz] of [
    [fx.regionInfoBar0Request, 32],
    [fx.regionInfoBar0RetryRequest, 120],
  ] as const) {
    const r = decodeRegionInfo(hex(f));
    t.same(r, { argsz, flags: 0, index: 0, capOffset: 0, size: 0n, offset: 0n });
    t.equal(toHex(encodeRegionInfo(r)), f);
  }
});

t.test("the argsz retry: first only the struct with the size needed, then everything", async (t) => {
  t.equal(regionCapsLength(bar0Caps), 88);
  const first = encodeRegionInfoReply(bar0, 32);
  t.equal(toHex(first), fx.regionInfoBar0Truncated, "argsz 32: struct only, argsz = 120, no CAPS");
  t.equal(
    toHex(encodeRegionInfoReply(bar0, 119)),
    fx.regionInfoBar0Truncated,
    "one byte short is still too small",
  );
  const second = encodeRegionInfoReply(bar0, 120);
  t.equal(toHex(second), fx.regionInfoBar0Full, "argsz 120: the caps, CAPS flag and cap_offset 32");
  t.equal(toHex(encodeRegionInfoReply(bar0, 4096)), fx.regionInfoBar0Full, "more room changes nothing");
  t.equal(
    toHex(encodeRegionInfoReply({ ...bar0, flags: bar0.flags | RegionFlag.CAPS }, 32)),
    fx.regionInfoBar0Truncated,
    "a CAPS bit in the input is cleared when the caps do not fit",
  );

  const truncated = decodeRegionInfoReply(hex(fx.regionInfoBar0Truncated));
  t.same(truncated, {
    argsz: 120,
    flags: 7,
    index: 0,
    capOffset: 0,
    size: 0x10000n,
    offset: 0x10000n,
    caps: [],
  });
  const full = decodeRegionInfoReply(hex(fx.regionInfoBar0Full));
  t.same(
    { ...full, caps: undefined },
    { argsz: 120, flags: 15, index: 0, capOffset: 32, size: 0x10000n, offset: 0x10000n, caps: undefined },
  );
  t.same(full.caps.slice(0, 3), bar0Caps.slice(0, 3));
  const raw = full.caps[3] as { id: number; version: number; data: Uint8Array };
  t.same(
    [raw.id, raw.version, toHex(raw.data)],
    [0x99, 2, "0102030400000000"],
    "unknown cap keeps its bytes (padding included)",
  );
  t.equal(
    toHex(encodeRegionInfoReply({ ...bar0, caps: full.caps }, full.argsz)),
    fx.regionInfoBar0Full,
    "re-encodes",
  );
});

t.test("a one-area example", async (t) => {
  const r = decodeRegionInfoReply(hex(fx.regionInfoOneSparse));
  t.same(r.caps, [{ id: 1, version: 1, areas: [{ offset: 0x1000n, size: 0x1000n }] }]);
  t.equal(r.argsz, 64);
  t.equal(
    toHex(encodeRegionInfoReply({ flags: 7, index: 0, size: 0x10000n, offset: 0n, caps: r.caps }, 64)),
    fx.regionInfoOneSparse,
  );
});

t.test("no caps: argsz 32, never the CAPS flag", async (t) => {
  const body = encodeRegionInfoReply({ flags: 3, index: 7, size: 256n, offset: 0n, caps: [] }, 4096);
  t.equal(
    toHex(body),
    "20000000 03000000 07000000 00000000 0001000000000000 0000000000000000".replace(/ /g, ""),
  );
});

t.test("request errors", async (t) => {
  const req = hex(fx.regionInfoBar0Request);
  throwsErrno(t, () => decodeRegionInfo(shorten(req)), Errno.EINVAL, /at least 32/);
  throwsErrno(t, () => decodeRegionInfo(withU32(req, 0, 31)), Errno.EINVAL, /argsz 31/);
  throwsErrno(t, () => decodeRegionInfo(new Uint8Array(16)), Errno.EINVAL);
});

t.test("reply chain errors", async (t) => {
  const full = hex(fx.regionInfoBar0Full);
  const cases: [string, Uint8Array, RegExp][] = [
    ["body shorter than the struct", full.subarray(0, 31), /at least 32/],
    ["cap_offset inside the struct", withU32(full, 12, 16), /points into the struct/],
    ["cap_offset 0 with CAPS", withU32(full, 12, 0), /points into the struct/],
    ["cap_offset past the body", withU32(full, 12, 200), /outside/],
    ["next pointing backwards", withU32(full, 80 + 4, 32), /does not move forwards/],
    ["next pointing to itself", withU32(full, 80 + 4, 80), /does not move forwards/],
    ["next inside the current header", withU32(full, 96 + 4, 100), /does not move forwards/],
    ["next past the body", withU32(full, 96 + 4, 116), /outside/],
    ["body cut inside the last cap header", full.subarray(0, 108), /outside/],
    [
      "sparse areas overrunning the next cap",
      withU32(full, 32 + 8, 3),
      /sparse-mmap capability at 32 needs 64/,
    ],
    ["huge nr_areas", withU32(full, 32 + 8, 0xffffffff), /sparse-mmap/],
    ["type cap cut short by next", withU32(full, 80 + 4, 88), /type capability at 80 needs 16/],
  ];
  for (const [name, body, re] of cases)
    throwsErrno(t, () => decodeRegionInfoReply(body), Errno.EINVAL, re, name);
  throwsErrno(
    t,
    () => decodeRegionInfoReply(shorten(hex(fx.regionInfoOneSparse))),
    Errno.EINVAL,
    /needs 32 bytes, has 31/,
  );
  t.same(decodeRegionInfoReply(withU32(full, 4, 7)).caps, [], "without CAPS the chain is not read");
});

t.test("encoder refuses what has no layout", async (t) => {
  t.throws(
    () => encodeRegionInfoReply({ ...bar0, caps: [{ id: 9, version: 1 } as unknown as RegionCap] }, 4096),
    RangeError,
  );
  t.throws(() => encodeRegionInfoReply({ ...bar0, size: -1n }, 32), RangeError);
});
