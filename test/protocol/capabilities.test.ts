// The VERSION capabilities JSON: defaults, validation (each rule with its errno), formatting.

import t from "tap";
import { DEFAULT_CAPABILITIES, Errno, formatCapabilities, parseCapabilities } from "../../protocol/index.ts";
import { throwsErrno } from "../fixtures/protocol/helpers.ts";

t.test("absent JSON, empty object and empty capabilities give the spec defaults", async (t) => {
  const defaults = {
    maxMsgFds: 1,
    maxDataXferSize: 1048576,
    maxDmaMaps: 65535,
    pgsizes: 4096,
    writeMultiple: false,
    twinSocket: null,
    migration: null,
  };
  t.same(DEFAULT_CAPABILITIES, defaults);
  t.same(parseCapabilities(null), defaults);
  t.same(parseCapabilities("{}"), defaults);
  t.same(parseCapabilities('{"capabilities":{}}'), defaults);
  t.not(parseCapabilities(null), DEFAULT_CAPABILITIES, "a fresh object each time");
});

t.test("every key, unknown keys ignored", async (t) => {
  const c = parseCapabilities(
    JSON.stringify({
      capabilities: {
        max_msg_fds: 1024,
        max_data_xfer_size: 65536,
        max_dma_maps: 10,
        pgsizes: 4096 | 2097152,
        write_multiple: true,
        twin_socket: { supported: true, fd_index: 0 },
        migration: { pgsize: 4096, max_bitmap_size: 1 << 20 },
        future_thing: [1, 2, 3],
      },
      other: "ignored",
    }),
  );
  t.same(c, {
    maxMsgFds: 1024,
    maxDataXferSize: 65536,
    maxDmaMaps: 10,
    pgsizes: 2101248,
    writeMultiple: true,
    twinSocket: { supported: true, fdIndex: 0 },
    migration: { pgsize: 4096, maxBitmapSize: 1048576 },
  });
  t.same(parseCapabilities('{"capabilities":{"twin_socket":{}}}').twinSocket, { supported: false });
});

t.test("invalid capabilities are EINVAL, naming the problem", async (t) => {
  const cases: [string, RegExp][] = [
    ["{", /not valid JSON/],
    ["", /not valid JSON/],
    ["[]", /not an object/],
    ["null", /not an object/],
    ['"caps"', /not an object/],
    ['{"capabilities":[]}', /"capabilities" is not an object/],
    ['{"capabilities":null}', /"capabilities" is not an object/],
    ['{"capabilities":7}', /"capabilities" is not an object/],
    ['{"capabilities":{"max_msg_fds":-1}}', /max_msg_fds must be a non-negative integer/],
    ['{"capabilities":{"max_msg_fds":1.5}}', /max_msg_fds/],
    ['{"capabilities":{"max_msg_fds":"8"}}', /max_msg_fds/],
    ['{"capabilities":{"max_msg_fds":1025}}', /max_msg_fds 1025 is over 1024/],
    ['{"capabilities":{"max_data_xfer_size":1e300}}', /max_data_xfer_size/],
    ['{"capabilities":{"max_dma_maps":null}}', /max_dma_maps/],
    ['{"capabilities":{"pgsizes":true}}', /pgsizes/],
    ['{"capabilities":{"write_multiple":1}}', /write_multiple must be a boolean/],
    ['{"capabilities":{"write_multiple":"true"}}', /write_multiple/],
    ['{"capabilities":{"twin_socket":true}}', /twin_socket is not an object/],
    ['{"capabilities":{"twin_socket":{"supported":1}}}', /twin_socket.supported/],
    ['{"capabilities":{"twin_socket":{"supported":true,"fd_index":-1}}}', /twin_socket.fd_index/],
    ['{"capabilities":{"migration":4096}}', /migration is not an object/],
    ['{"capabilities":{"migration":{}}}', /migration.pgsize is missing/],
    ['{"capabilities":{"migration":{"pgsize":4096,"max_bitmap_size":-5}}}', /migration.max_bitmap_size/],
  ];
  for (const [json, re] of cases) throwsErrno(t, () => parseCapabilities(json), Errno.EINVAL, re, json);
});

t.test("inherited property names are not read as keys", async (t) => {
  t.same(parseCapabilities('{"capabilities":{"__proto__":{"max_msg_fds":5000}}}').maxMsgFds, 1);
  t.same(parseCapabilities('{"constructor":{}}').maxMsgFds, 1);
});

t.test("formatCapabilities: compact, only the given keys, fixed order", async (t) => {
  t.equal(
    formatCapabilities({ maxMsgFds: 8, maxDataXferSize: 1048576, pgsizes: 4096, maxDmaMaps: 65535 }),
    '{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535}}',
    "the reply QEMU is given",
  );
  t.equal(
    formatCapabilities({
      twinSocket: { supported: true, fdIndex: 0 },
      migration: { pgsize: 4096, maxBitmapSize: 1024 },
      writeMultiple: true,
      maxDmaMaps: 1,
      pgsizes: 4096,
      maxDataXferSize: 2,
      maxMsgFds: 3,
    }),
    '{"capabilities":{"max_msg_fds":3,"max_data_xfer_size":2,"pgsizes":4096,"max_dma_maps":1,"write_multiple":true,' +
      '"migration":{"pgsize":4096,"max_bitmap_size":1024},"twin_socket":{"supported":true,"fd_index":0}}}',
  );
  t.equal(formatCapabilities({}), '{"capabilities":{}}');
  t.equal(formatCapabilities({ twinSocket: null, migration: null }), '{"capabilities":{}}');
  t.equal(
    formatCapabilities({ twinSocket: { supported: false } }),
    '{"capabilities":{"twin_socket":{"supported":false}}}',
  );
  t.throws(() => formatCapabilities({ maxMsgFds: -1 }), RangeError);
  t.throws(() => formatCapabilities({ pgsizes: 0.5 }), RangeError);
});

t.test("format then parse round-trips", async (t) => {
  const c = {
    maxMsgFds: 16,
    maxDataXferSize: 4096,
    maxDmaMaps: 7,
    pgsizes: 4096,
    writeMultiple: true,
    twinSocket: { supported: true },
    migration: { pgsize: 4096 },
  };
  t.same(parseCapabilities(formatCapabilities(c)), c);
});
