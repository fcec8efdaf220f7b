// Every message of the two QEMU 11.1 traces (rebuilt byte for byte by
// test/fixtures/protocol/build-trace-fixtures.mjs) decodes to the fields the trace printed and
// re-encodes to the same bytes.

import t from "tap";
import {
  Command,
  decodeDeviceInfo,
  decodeDeviceReset,
  decodeDmaMap,
  decodeDmaUnmap,
  decodeDmaUnmapReply,
  decodeHeader,
  decodeIrqInfo,
  decodeRegionInfo,
  decodeRegionInfoReply,
  decodeRegionRead,
  decodeRegionReadReply,
  decodeRegionWrite,
  decodeRegionWriteReply,
  decodeSetIrqs,
  decodeVersion,
  encodeDeviceInfo,
  encodeDeviceReset,
  encodeDmaMap,
  encodeDmaUnmap,
  encodeDmaUnmapReply,
  encodeIrqInfo,
  encodeMessage,
  encodeRegionInfo,
  encodeRegionInfoReply,
  encodeRegionRead,
  encodeRegionReadMessage,
  encodeRegionReadReply,
  encodeRegionReadReplyMessage,
  encodeRegionWrite,
  encodeRegionWriteMessage,
  encodeRegionWriteReply,
  encodeRegionWriteReplyMessage,
  encodeSetIrqs,
  encodeVersion,
  HEADER_SIZE,
  HeaderFlag,
  parseCapabilities,
} from "../../protocol/index.ts";
import { hex, loadTrace, type TraceMessage, toHex } from "../fixtures/protocol/helpers.ts";

type Decoded = Record<string, unknown>;
interface Codec {
  decode(body: Uint8Array): Decoded | null;
  encode(value: Decoded, m: TraceMessage): Uint8Array;
}

const empty: Codec = {
  decode: (body) => {
    if (body.length !== 0) throw new Error("expected an empty body");
    return null;
  },
  encode: () => new Uint8Array(0),
};

// biome-ignore lint/suspicious/noExplicitAny: the table feeds each decoder's output to its encoder
type Any = any;
const codecs: Record<string, Codec> = {
  "VERSION cmd": { decode: decodeVersion as Any, encode: encodeVersion as Any },
  "VERSION reply": { decode: decodeVersion as Any, encode: encodeVersion as Any },
  "DMA_MAP cmd": { decode: decodeDmaMap as Any, encode: encodeDmaMap as Any },
  "DMA_MAP reply": empty,
  "DMA_UNMAP cmd": { decode: decodeDmaUnmap as Any, encode: encodeDmaUnmap as Any },
  "DMA_UNMAP reply": { decode: decodeDmaUnmapReply as Any, encode: encodeDmaUnmapReply as Any },
  "DEVICE_GET_INFO cmd": { decode: decodeDeviceInfo as Any, encode: encodeDeviceInfo as Any },
  "DEVICE_GET_INFO reply": { decode: decodeDeviceInfo as Any, encode: encodeDeviceInfo as Any },
  "DEVICE_GET_REGION_INFO cmd": { decode: decodeRegionInfo as Any, encode: encodeRegionInfo as Any },
  "DEVICE_GET_REGION_INFO reply": {
    decode: decodeRegionInfoReply as Any,
    // The server's path: build the reply from the region and QEMU's argsz (32 in the trace).
    encode: (r: Any) => encodeRegionInfoReply(r, 32),
  },
  "DEVICE_GET_IRQ_INFO cmd": { decode: decodeIrqInfo as Any, encode: encodeIrqInfo as Any },
  "DEVICE_GET_IRQ_INFO reply": { decode: decodeIrqInfo as Any, encode: encodeIrqInfo as Any },
  "DEVICE_SET_IRQS cmd": { decode: decodeSetIrqs as Any, encode: encodeSetIrqs as Any },
  "DEVICE_SET_IRQS reply": empty,
  "REGION_READ cmd": { decode: decodeRegionRead as Any, encode: encodeRegionRead as Any },
  "REGION_READ reply": { decode: decodeRegionReadReply as Any, encode: encodeRegionReadReply as Any },
  "REGION_WRITE cmd": { decode: decodeRegionWrite as Any, encode: encodeRegionWrite as Any },
  "REGION_WRITE reply": { decode: decodeRegionWriteReply as Any, encode: encodeRegionWriteReply as Any },
  "DEVICE_RESET cmd": {
    decode: (b) => {
      decodeDeviceReset(b);
      return null;
    },
    encode: () => encodeDeviceReset(),
  },
  "DEVICE_RESET reply": empty,
};

const camel = (k: string): string => k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/** Differences between the trace's printed fields and the decoded message ("" when none). */
function compareFields(m: TraceMessage, d: Decoded | null): string {
  const problems: string[] = [];
  for (const [key, printed] of Object.entries(m.fields)) {
    if (m.command === "VERSION") continue; // checked separately
    const name = camel(key);
    const got = d?.[name];
    if (name === "data") {
      const bytes = got as Uint8Array;
      let v = 0n;
      for (let i = Math.min(bytes.length, 8) - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
      if (v !== BigInt(printed)) problems.push(`data ${v} != ${printed}`);
    } else if (typeof got === "bigint") {
      if (got !== BigInt(printed)) problems.push(`${name} ${got} != ${printed}`);
    } else if (got !== Number(printed)) {
      problems.push(`${name} ${String(got)} != ${printed}`);
    }
  }
  return problems.join(", ");
}

for (const name of ["memfd", "anon"] as const) {
  const trace = loadTrace(name);

  t.test(
    `${name} trace: every message decodes to its printed fields and re-encodes byte-exactly`,
    async (t) => {
      t.equal(trace.messages.length, 400, "400 messages");
      const seen = new Set<string>();
      for (const m of trace.messages) {
        const what = `line ${m.line} ${m.dir} id=${m.msgId} ${m.command} ${m.kind}`;
        const bytes = hex(m.hex);
        const header = decodeHeader(bytes);
        t.same(
          header,
          {
            msgId: m.msgId,
            command: Command[m.command as keyof typeof Command],
            msgSize: m.size,
            flags: m.kind === "cmd" ? 0 : 1,
            error: 0,
          },
          `${what}: header`,
        );
        const body = bytes.subarray(HEADER_SIZE);
        const key = `${m.command} ${m.kind}`;
        const codec = codecs[key];
        if (!codec) {
          t.fail(`${what}: no codec for ${key}`);
          continue;
        }
        seen.add(key);
        const decoded = codec.decode(body);
        t.equal(compareFields(m, decoded), "", `${what}: fields`);
        const again = codec.encode(decoded as Decoded, m);
        const whole = encodeMessage(
          { msgId: header.msgId, command: header.command, flags: header.flags },
          again,
        );
        t.equal(toHex(whole), m.hex, `${what}: re-encodes byte-exactly`);
      }
      t.equal(seen.size, Object.keys(codecs).length, "every command/reply kind of the trace was exercised");
    },
  );

  t.test(`${name} trace: the one-allocation region message encoders give the trace's bytes`, async (t) => {
    let n = 0;
    for (const m of trace.messages) {
      if (m.command !== "REGION_READ" && m.command !== "REGION_WRITE") continue;
      const bytes = hex(m.hex);
      const body = bytes.subarray(HEADER_SIZE);
      let built: Uint8Array;
      if (m.command === "REGION_READ" && m.kind === "cmd")
        built = encodeRegionReadMessage(m.msgId, decodeRegionRead(body));
      else if (m.command === "REGION_READ")
        built = encodeRegionReadReplyMessage(m.msgId, decodeRegionReadReply(body));
      else if (m.kind === "cmd")
        built = encodeRegionWriteMessage(m.msgId, HeaderFlag.COMMAND, decodeRegionWrite(body));
      else built = encodeRegionWriteReplyMessage(m.msgId, decodeRegionWriteReply(body));
      if (toHex(built) !== m.hex) t.fail(`line ${m.line}: ${toHex(built)} != ${m.hex}`);
      n++;
    }
    t.equal(n, 310, "all 310 region messages checked");
  });
}

t.test("QEMU's VERSION request and libvfio-user's reply parse as capabilities", async (t) => {
  const [request, reply] = loadTrace("memfd").messages;
  const req = decodeVersion(hex(request.hex).subarray(HEADER_SIZE));
  t.equal(req.json, request.fields.json, "raw JSON text kept, spaces included");
  t.same(parseCapabilities(req.json), {
    maxMsgFds: 16,
    maxDataXferSize: 1048576,
    maxDmaMaps: 65535,
    pgsizes: 4096,
    writeMultiple: true,
    twinSocket: null,
    migration: { pgsize: 4096, maxBitmapSize: 268435456 },
  });
  const rep = decodeVersion(hex(reply.hex).subarray(HEADER_SIZE));
  t.same(parseCapabilities(rep.json), {
    maxMsgFds: 8,
    maxDataXferSize: 1048576,
    maxDmaMaps: 65535,
    pgsizes: 4096,
    writeMultiple: false,
    twinSocket: null,
    migration: { pgsize: 4096 },
  });
});

t.test("the two traces carry the same messages, except for what guest-RAM fds change", async (t) => {
  const memfd = loadTrace("memfd").messages;
  const anon = loadTrace("anon").messages;
  // Without an fd a DMA_MAP's file offset is meaningless, and QEMU sends 0.
  const zeroOffset = (m: TraceMessage): string =>
    m.command === "DMA_MAP" && m.kind === "cmd"
      ? `${m.hex.slice(0, 48)}${"0".repeat(16)}${m.hex.slice(64)}`
      : m.hex;
  t.ok(
    anon.every((m) => zeroOffset(m) === m.hex),
    "anon: every DMA_MAP has offset 0",
  );
  t.same(
    anon.map(zeroOffset).sort(),
    memfd.map(zeroOffset).sort(),
    "same messages (replies interleave differently)",
  );
  t.equal(
    memfd.filter((m) => m.fds > 0 && m.command === "DMA_MAP").length,
    13,
    "memfd: 13 DMA_MAPs carry an fd",
  );
  t.equal(
    anon.filter((m) => m.fds > 0 && m.command === "DMA_MAP").length,
    0,
    "anon: no DMA_MAP carries an fd",
  );
  t.equal(anon.filter((m) => m.fds > 0).length, 3, "anon: only the 3 SET_IRQS eventfds");
});
