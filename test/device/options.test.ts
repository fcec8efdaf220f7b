// Device options: each kind's accepted and refused values, the one size grammar, declarations
// checked when a device is defined, defaults always filled in, typed values (the declared kind is
// the TypeScript type of ctx.options), and `vfu list --options`' formatter.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t, { type Test } from "tap";
import { scratchpad } from "../../devices/scratchpad/index.ts";
import {
  Device,
  DeviceDma,
  defineDevice,
  describeAccepted,
  formatOptions,
  formatSize,
  MemorySink,
  OptionError,
  type OptionSpec,
  parseSize,
  resolveOptions,
  SinkLogger,
  U64_MAX,
} from "../../src/index.ts";

/** Resolve one value of one option declared `spec`. */
function one(spec: OptionSpec, value: string | number | bigint | boolean) {
  return resolveOptions({ name: "dev", options: { k: spec } }, { k: value }).k;
}

function refused(
  t: Test,
  spec: OptionSpec,
  values: readonly (string | number | bigint | boolean)[],
  why: RegExp,
) {
  for (const v of values) {
    t.throws(
      () => one(spec, v),
      new RegExp(
        `^device dev: option k=${reEscape(String(v))} is refused \\(${why.source}\\); it takes ${reEscape(describeAccepted(spec))}$`,
      ),
      `${spec.kind} refuses ${JSON.stringify(String(v))}`,
    );
  }
}

function reEscape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

const desc = { description: "d" };

t.test("integer: decimal, hex, octal, binary inside the range; a bigint when a bound is one", async (t) => {
  const spec = { kind: "integer", min: -4, max: 300, ...desc } as const;
  t.equal(one(spec, "0"), 0);
  t.equal(one(spec, " 300 "), 300, "blanks around are ignored");
  t.equal(one(spec, "0x12c"), 300);
  t.equal(one(spec, "0X10"), 16);
  t.equal(one(spec, "0o17"), 15);
  t.equal(one(spec, "0b101"), 5);
  t.equal(one(spec, "-4"), -4);
  t.equal(one(spec, "+7"), 7);
  t.equal(one(spec, 12), 12, "a typed value");
  t.equal(one(spec, 12n), 12, "a bigint for a number option becomes a number");
  refused(t, spec, ["xyz", "", "1.5", "0x", "12abc", "1e3", "0b102", true], /not an integer/);
  refused(t, spec, [1.5], /not an integer/);
  refused(t, spec, ["301", "-5", "0x1000", 301], /out of range/);
  const big = { kind: "integer", min: 0n, max: U64_MAX, hex: true, ...desc } as const;
  t.equal(one(big, "0xffffffffffffffff"), U64_MAX, "64-bit values keep every bit");
  t.equal(one(big, 7), 7n, "a number for a bigint option becomes a bigint");
  refused(t, big, ["0x10000000000000000"], /out of range/);
  t.equal(describeAccepted(big), "integer 0x0-0xffffffffffffffff");
  const even = {
    kind: "integer",
    min: 0,
    max: 10,
    rule: { accepts: "an even number", test: (v: number) => v % 2 === 0 },
    ...desc,
  } as const;
  t.equal(one(even, "4"), 4);
  refused(t, even, ["3"], /not an even number/);
  t.equal(describeAccepted(even), "integer 0-10, an even number");
});

t.test("size: one grammar, binary units, bounds, power of two, multiple of", async (t) => {
  t.equal(parseSize("4096"), 4096);
  t.equal(parseSize("4096B"), 4096);
  t.equal(parseSize("64K"), 64 * 1024);
  t.equal(parseSize("64k"), 64 * 1024);
  t.equal(parseSize("64KB"), 64 * 1024);
  t.equal(parseSize("64KiB"), 64 * 1024);
  t.equal(parseSize("16M"), 16 * 2 ** 20);
  t.equal(parseSize("16 MiB"), 16 * 2 ** 20);
  t.equal(parseSize("1G"), 2 ** 30);
  t.equal(parseSize("2T"), 2 * 2 ** 40);
  for (const bad of ["", "lots", "-1", "1.5M", "16X", "M", "16iB", "0x10", "16MM"])
    t.throws(() => parseSize(bad), /is not a size/, JSON.stringify(bad));
  t.throws(() => parseSize("9000000T"), /larger than 2\^53-1/);
  t.same(
    ["16M", "4K", "1000", "1G", "1536K"],
    [16 * 2 ** 20, 4096, 1000, 2 ** 30, 1536 * 1024].map(formatSize),
  );

  const spec = { kind: "size", min: "4M", max: "256M", powerOfTwo: true, ...desc } as const;
  t.equal(one(spec, "16M"), 16 * 2 ** 20);
  t.equal(one(spec, 8 * 2 ** 20), 8 * 2 ** 20, "a typed value");
  refused(t, spec, ["3M", "512M", 1024], /out of range/);
  refused(t, spec, ["12M"], /not a power of two/);
  refused(t, spec, ["big", -1, 1.5, true], /not a size/);
  refused(t, spec, ["9000000T"], /too large/);
  t.equal(describeAccepted(spec), "size 4M-256M, a power of two");
  const pages = { kind: "size", multipleOf: 4096, ...desc } as const;
  t.equal(one(pages, "8K"), 8192);
  refused(t, pages, ["5000"], /not a multiple of 4096/);
  t.equal(describeAccepted(pages), "size, a multiple of 4K");
});

t.test("boolean: on/off, true/false, yes/no, 1/0", async (t) => {
  const spec = { kind: "boolean", ...desc } as const;
  for (const v of ["on", "ON", "true", "yes", "1", true]) t.equal(one(spec, v), true, String(v));
  for (const v of ["off", "Off", "false", "no", "0", false]) t.equal(one(spec, v), false, String(v));
  refused(t, spec, ["maybe", "", "2", "onn"], /not on or off/);
  t.equal(describeAccepted(spec), "on|off");
});

t.test("enum: exactly one of the values", async (t) => {
  const spec = { kind: "enum", values: ["512", "4096"], ...desc } as const;
  t.equal(one(spec, "4096"), "4096");
  t.equal(one(spec, 512), "512", "a typed number names the value too");
  refused(t, spec, ["1024", "", "Four", "5120"], /not one of the values/);
  t.equal(describeAccepted(spec), "512|4096");
});

t.test("string: any text, or what its rule accepts", async (t) => {
  const free = { kind: "string", ...desc } as const;
  t.equal(one(free, ""), "", "even empty");
  t.equal(one(free, "a b"), "a b");
  refused(t, free, [3], /not text/);
  const word = {
    kind: "string",
    rule: { accepts: "a lower-case word", test: (s: string) => /^[a-z]+$/.test(s) },
    ...desc,
  } as const;
  t.equal(one(word, "abc"), "abc");
  refused(t, word, ["ABC", "a b"], /not a lower-case word/);
  t.equal(describeAccepted(word), "a lower-case word");
});

t.test("path: a directory that exists", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "vfu-options-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const spec = { kind: "path", ...desc } as const;
  t.equal(
    one(spec, path.join(dir, "new-file")),
    path.join(dir, "new-file"),
    "the file itself may not exist yet",
  );
  t.equal(one(spec, "relative-name"), "relative-name", "relative to the working directory");
  refused(
    t,
    spec,
    [path.join(dir, "missing", "x")],
    new RegExp(`directory ${reEscape(path.join(dir, "missing"))} does not exist`),
  );
  refused(t, spec, [""], /empty/);
  refused(t, spec, ["a\0b"], /contains a NUL byte/);
  refused(t, spec, [5], /not a path/);
});

t.test("unknown keys are refused with the known ones", async (t) => {
  t.throws(
    () => resolveOptions(scratchpad, { nope: "1" }),
    /^device scratchpad has no option "nope" \(it has: scratch\)$/,
  );
  const bare = defineDevice({
    name: "bare",
    summary: "s",
    bus: "platform",
    regions: [],
    irqs: [],
    create: () => ({}),
  });
  t.throws(() => resolveOptions(bare, { x: "1" }), /has no option "x" \(it takes no options\)/);
  t.throws(() => resolveOptions(bare, { x: "1" }), OptionError);
});

// Regression: `scratchpad --set scratch=xyz` was Number("xyz") >>> 0, served as 0.
t.test("scratchpad refuses scratch=xyz instead of serving 0", async (t) => {
  t.throws(
    () => resolveOptions(scratchpad, { scratch: "xyz" }),
    /^device scratchpad: option scratch=xyz is refused \(not an integer\); it takes integer 0x0-0xffffffff$/,
  );
  t.equal(resolveOptions(scratchpad, { scratch: "0xdeadbeef" }).scratch, 0xdeadbeef);
});

/** A device that hands back the options its create got. */
const seen = defineDevice({
  name: "seen",
  summary: "test: options as the model sees them",
  bus: "platform",
  regions: [],
  irqs: [],
  options: {
    count: { kind: "integer", min: 0, max: 9, default: 3, description: "d" },
    mask: { kind: "integer", min: 0n, max: U64_MAX, default: 0xffn, description: "d" },
    size: { kind: "size", default: "64K", description: "d" },
    on: { kind: "boolean", default: true, description: "d" },
    pick: { kind: "enum", values: ["a", "b"], default: "b", description: "d" },
    text: { kind: "string", default: "hi", description: "d" },
    file: { kind: "path", description: "d" },
  },
  create(ctx) {
    // The declared kinds are the TypeScript types (tsc checks these lines).
    const count: number = ctx.options.count;
    const mask: bigint = ctx.options.mask;
    const size: number = ctx.options.size;
    const on: boolean = ctx.options.on;
    const pick: "a" | "b" = ctx.options.pick;
    const text: string = ctx.options.text;
    const file: string | undefined = ctx.options.file;
    // @ts-expect-error an option without a default may be absent
    const noDefault: string = ctx.options.file;
    // @ts-expect-error no such option
    void ctx.options.other;
    return { regions: {}, options: { count, mask, size, on, pick, text, file, noDefault } };
  },
});

t.test("defaults always fill in, also for options: {} (it skipped them)", async (t) => {
  const log = new SinkLogger(new MemorySink());
  const expected = { count: 3, mask: 0xffn, size: 65536, on: true, pick: "b", text: "hi" };
  for (const options of [undefined, {}]) {
    const d = new Device(seen, { dma: new DeviceDma(log), log, options });
    const { file, noDefault, ...rest } = d.behaviour.options;
    t.same(rest, expected, `options: ${JSON.stringify(options)}`);
    t.equal(file, undefined, "no default: absent");
    t.equal(noDefault, undefined);
    d.dispose();
  }
  const given = new Device(seen, {
    dma: new DeviceDma(log),
    log,
    options: { count: "9", mask: "0x1", size: "1M", on: "off", pick: "a", text: "", file: "x" },
  });
  t.same(given.behaviour.options, {
    count: 9,
    mask: 1n,
    size: 2 ** 20,
    on: false,
    pick: "a",
    text: "",
    file: "x",
    noDefault: "x",
  });
  given.dispose();
});

t.test("resolving is idempotent: resolved values resolve to themselves", async (t) => {
  const once = resolveOptions(seen, { size: "2M", on: "no", mask: "0x10" });
  t.same(resolveOptions(seen, once), once);
});

t.test("declarations are checked when the device is defined", async (t) => {
  const base = { summary: "s", bus: "platform", regions: [], irqs: [], create: () => ({}) } as const;
  const bad = (options: Record<string, unknown>, message: RegExp) =>
    t.throws(
      () => defineDevice({ ...base, name: "decl", options: options as never }),
      message,
      JSON.stringify(options, (_k, v) => (typeof v === "bigint" ? `${v}n` : v)),
    );
  bad(
    { Bad_Key: { kind: "boolean", description: "d" } },
    /^device decl: option Bad_Key: the key is not kebab-case$/,
  );
  bad(
    { k: { kind: "float", description: "d" } },
    /option k: kind "float" is not one of integer, size, boolean, enum, string, path/,
  );
  bad({ k: { kind: "boolean", description: "" } }, /option k: has no description/);
  bad({ k: { kind: "integer", min: 5, max: 4, description: "d" } }, /option k: min 5 is above max 4/);
  bad({ k: { kind: "integer", min: 0, max: 2 ** 60, description: "d" } }, /bound .* is not a safe integer/);
  bad(
    { k: { kind: "integer", min: 0, max: 4, default: 5, description: "d" } },
    /option k: the default 5 is refused \(out of range\); it takes integer 0-4/,
  );
  bad({ k: { kind: "size", min: "1G", max: "1M", description: "d" } }, /min 1G is above max 1M/);
  bad({ k: { kind: "size", max: "huge", description: "d" } }, /"huge" is not a size/);
  bad({ k: { kind: "enum", values: [], description: "d" } }, /an enum without values/);
  bad({ k: { kind: "enum", values: ["a", "a"], description: "d" } }, /enum values repeat/);
  bad({ k: { kind: "enum", values: ["a"], default: "b", description: "d" } }, /the default b is refused/);
  bad(
    { k: { kind: "boolean", default: "maybe", description: "d" } },
    /the default maybe is refused \(not on or off\)/,
  );
});

t.test("formatOptions: key=default, what it takes, the description, in columns", async (t) => {
  t.equal(formatOptions(undefined), "    (no options)\n");
  t.equal(formatOptions({}), "    (no options)\n");
  t.equal(
    formatOptions({
      mask: { kind: "integer", min: 1n, max: U64_MAX, hex: true, default: 0xfffn, description: "the mask" },
      vram: { kind: "size", min: "4M", max: "256M", powerOfTwo: true, default: "16M", description: "memory" },
      mmap: { kind: "boolean", default: true, description: "offer it" },
      lba: { kind: "enum", values: ["512", "4096"], default: "512", description: "block size" },
      control: { kind: "path", description: "a FIFO" },
    }),
    [
      "    mask=0xfff  integer 0x1-0xffffffffffffffff  the mask\n",
      "    vram=16M    size 4M-256M, a power of two    memory\n",
      "    mmap=on     on|off                          offer it\n",
      "    lba=512     512|4096                        block size\n",
      "    control     path                            a FIFO\n",
    ].join(""),
  );
});
