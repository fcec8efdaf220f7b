// VERSION: the raw JSON survives decode/encode byte for byte; malformed bodies are EINVAL.

import t from "tap";
import { decodeVersion, Errno, encodeVersion, parseCapabilities } from "../../protocol/index.ts";
import { versionNoJson, versionServerReply } from "../fixtures/protocol/hand-built.ts";
import { hex, throwsErrno, toHex } from "../fixtures/protocol/helpers.ts";

t.test("server reply with compact JSON", async (t) => {
  const body = hex(versionServerReply);
  const v = decodeVersion(body);
  t.same(v, {
    major: 0,
    minor: 0,
    json: '{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535}}',
  });
  t.equal(parseCapabilities(v.json).maxMsgFds, 8);
  t.equal(toHex(encodeVersion(v)), versionServerReply);
});

t.test("no JSON at all", async (t) => {
  const v = decodeVersion(hex(versionNoJson));
  t.same(v, { major: 0, minor: 2, json: null });
  t.equal(toHex(encodeVersion(v)), versionNoJson);
});

t.test("non-ASCII JSON and a byte-order mark are kept as they were", async (t) => {
  for (const json of ['{"x":"h\u00e9llo \u2603"}', '\ufeff{"capabilities":{}}', ""]) {
    const body = encodeVersion({ major: 1, minor: 2, json });
    t.same(decodeVersion(body), { major: 1, minor: 2, json });
    t.equal(toHex(encodeVersion(decodeVersion(body))), toHex(body));
  }
});

t.test("malformed VERSION bodies are EINVAL", async (t) => {
  throwsErrno(t, () => decodeVersion(new Uint8Array(0)), Errno.EINVAL, /at least 4/);
  throwsErrno(t, () => decodeVersion(hex("000000")), Errno.EINVAL, /at least 4/);
  throwsErrno(t, () => decodeVersion(hex("00000000 7b7d")), Errno.EINVAL, /not NUL-terminated/);
  throwsErrno(t, () => decodeVersion(hex("00000000 7b 00 7d 00")), Errno.EINVAL, /NUL byte inside/);
  throwsErrno(t, () => decodeVersion(hex("00000000 7bff7d 00")), Errno.EINVAL, /UTF-8/);
});

t.test("encodeVersion refuses a NUL in the text and bad numbers", async (t) => {
  t.throws(() => encodeVersion({ major: 0, minor: 0, json: "{}\0" }), RangeError);
  t.throws(() => encodeVersion({ major: 65536, minor: 0, json: null }), RangeError);
  t.throws(() => encodeVersion({ major: 0, minor: -1, json: "{}" }), RangeError);
});
