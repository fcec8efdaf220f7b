// `vfu` argument parsing: every form a user types, and a message naming each mistake.
import t from "tap";
import { parseArgs, SERVE_HELP, UsageError } from "../../cli/args.ts";

t.test("help forms", async (t) => {
  t.same(parseArgs([]), { kind: "help", topic: "main" });
  t.same(parseArgs(["--help"]), { kind: "help", topic: "main" });
  t.same(parseArgs(["help", "serve"]), { kind: "help", topic: "serve" });
  t.same(parseArgs(["serve", "--help"]), { kind: "help", topic: "serve" });
  t.same(parseArgs(["list", "-h"]), { kind: "help", topic: "list" });
  t.same(parseArgs(["list"]), { kind: "list", options: false });
  t.same(parseArgs(["list", "--options"]), { kind: "list", options: true });
  t.throws(() => parseArgs(["list", "nvme"]), /takes only --options/);
});

t.test("serve with every option, and several devices in one process", async (t) => {
  const cmd = parseArgs([
    "--verbose",
    "serve",
    "scratchpad",
    "--socket",
    "/tmp/a.sock",
    "--set",
    "scratch=7",
    "--mode",
    "0660",
    "--dma-layout",
    "qemu-10.1",
    "--no-write-multiple",
    "--no-mmap",
    "--allow-unsealed-dma-fds",
    "serve",
    "pl061",
    "--socket",
    "/tmp/b.sock",
  ]);
  t.equal(cmd.kind, "serve");
  if (cmd.kind !== "serve") return;
  t.equal(cmd.verbose, true);
  t.same(cmd.targets[0], {
    device: "scratchpad",
    socket: "/tmp/a.sock",
    set: { scratch: "7" },
    mode: 0o660,
    dmaLayout: "qemu-10.1",
    writeMultiple: false,
    mmap: false,
    allowUnsealedDmaFds: true,
  });
  t.same(cmd.targets[1], {
    device: "pl061",
    socket: "/tmp/b.sock",
    set: {},
    mode: 0o600,
    dmaLayout: "spec",
    writeMultiple: true,
    mmap: true,
    allowUnsealedDmaFds: false,
  });
});

t.test("mistakes are UsageErrors that name the problem", async (t) => {
  const cases: [string[], RegExp][] = [
    [["frobnicate"], /unknown command "frobnicate"/],
    [["serve"], /serve needs a device name/],
    [["serve", "scratchpad"], /--socket <path> is required/],
    [["serve", "scratchpad", "--socket"], /--socket needs a value/],
    [["serve", "scratchpad", "--socket", "/a", "--set", "novalue"], /--set takes key=value/],
    [["serve", "scratchpad", "--socket", "/a", "--mode", "777x"], /--mode takes octal/],
    [["serve", "scratchpad", "--socket", "/a", "--dma-layout", "x"], /--dma-layout is "spec" or "qemu-10.1"/],
    [["serve", "scratchpad", "--socket", "/a", "--bogus"], /unknown argument "--bogus"/],
    [["serve", "scratchpad", "--socket", "/a", "serve", "pl061", "--socket", "/a"], /given to two devices/],
    [["list", "extra"], /takes only --options \(got extra\)/],
    [["help", "nothing"], /no help on "nothing"/],
  ];
  for (const [argv, message] of cases) {
    t.throws(() => parseArgs(argv), UsageError, argv.join(" "));
    try {
      parseArgs(argv);
    } catch (err) {
      t.match((err as Error).message, message, argv.join(" "));
    }
  }
});

t.test("serve help names --no-mmap and its consequence", async (t) => {
  t.match(SERVE_HELP, /--no-mmap\s+report no region as mmap-capable/);
  t.match(SERVE_HELP, /keeps\s+posting MMIO writes/);
});
