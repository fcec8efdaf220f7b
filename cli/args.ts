// Command-line parsing for `vfu`, kept apart from main.ts so tests can check every message.
// Grammar (--verbose and --log-level may stand anywhere):
//   vfu [--verbose] [--log-level error|warn|info|debug]
//       serve <device|file> --socket <path> [--set key=value]... [--mode 0600]
//       [--dma-layout spec|qemu-10.1] [--no-write-multiple] [--no-mmap] [--allow-unsealed-dma-fds]
//       [serve <device|file> ...]...
//   vfu list [--options]
//   vfu describe <device> [--json]
//   vfu help | --help | <command> --help
// A <device> is a built-in model's name or a module file whose default export is a definition.

export const LOG_LEVELS = ["error", "warn", "info", "debug"] as const;
export type CliLogLevel = (typeof LOG_LEVELS)[number];

export interface ServeTarget {
  /** A built-in model's name, or a path to a module file (see load-device.ts). */
  device: string;
  socket: string;
  set: Record<string, string>;
  mode: number;
  dmaLayout: "spec" | "qemu-10.1";
  writeMultiple: boolean;
  /** Offer memory-backed regions for mmap (false: `--no-mmap`). */
  mmap: boolean;
  allowUnsealedDmaFds: boolean;
}

export type Command =
  | { kind: "help"; topic: "main" | "serve" | "list" | "describe" }
  | { kind: "list"; options: boolean }
  | { kind: "describe"; device: string; json: boolean }
  | { kind: "serve"; targets: ServeTarget[]; verbose: boolean; logLevel: CliLogLevel };

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export const MAIN_HELP = `vfu: serve emulated PCI and platform devices to QEMU over vfio-user

Usage:
  vfu serve <device|file> --socket <path> [options] [serve <device|file> --socket <path> ...]
  vfu list [--options]
  vfu describe <device> [--json]
  vfu help [serve|list|describe]

Commands:
  serve     serve one or more devices, each on its own UNIX socket
  list      list the built-in device models, one line each
  describe  print a platform device's device-tree description (DTS)

Global options:
  --log-level <level>  error, warn, info (default) or debug
  --verbose            decode every vfio-user message on one line (implies --log-level debug)
  -h, --help           show help
`;

export const SERVE_HELP = `Usage: vfu serve <device|file> --socket <path> [options] [serve <device|file> --socket <path> [options]]...

Serve a device on the UNIX socket <path> until stopped by SIGINT, SIGTERM or SIGHUP (the socket
file is then removed). <device> is a built-in model (see "vfu list") or a module file, such as
./my-device.mjs or ./my-device.ts, whose default export is a device definition (TypeScript files
need tsx installed). Several "serve" groups run several devices in one process, one socket each;
names and files mix freely.

Options (apply to the serve group they follow):
  --socket <path>        socket to listen on (required); a stale socket there is replaced
  --set <key>=<value>    set a device option (repeatable; see "vfu list --options")
  --mode <octal>         permission bits of the socket file (default 0600)
  --dma-layout <layout>  DMA_READ/DMA_WRITE layout: "spec" (default; what QEMU 11.1 speaks) or
                         "qemu-10.1" (QEMU 10.1's shifted layout); matters only for guest RAM
                         without an fd
  --no-write-multiple    do not offer REGION_WRITE_MULTI to the client
  --no-mmap              report no region as mmap-capable: everything stays trapped, and QEMU keeps
                         posting MMIO writes (it stops posting for the whole device once any
                         region offers mmap)
  --allow-unsealed-dma-fds
                         accept guest memory fds not sealed against shrinking (memory-backend-file,
                         memory-backend-shm); a client that shrinks one then kills the server
  --log-level <level>    error, warn, info (default) or debug
  --verbose              decode every vfio-user message on one line (implies --log-level debug)

Example (QEMU side):
  qemu-system-x86_64 ... -device '{"driver":"vfio-user-pci","socket":{"type":"unix","path":"<path>"}}'
`;

export const LIST_HELP = `Usage: vfu list [--options]

Print the available device models, one line each: name, bus, summary. With --options, each
device's options follow its line: what "--set <key>=<value>" takes, with the default.
`;

export const DESCRIBE_HELP = `Usage: vfu describe <device> [--json]

Print the device-tree description of a platform device: its compatible strings, its MMIO
regions (reg), its interrupt lines (interrupts), clocks and properties, as device-tree source.
A device declared with definePlatformDevice serves exactly this text to clients in its
device-tree region. reg = <vfio-user region, offset, size>; interrupts = <vfio-user irq index,
vector, sense>. PCI devices have no device-tree description (their config space describes them).

Options:
  --json   print the description as JSON instead of DTS
`;

export function parseArgs(argv: readonly string[]): Command {
  const args = [...argv];
  let verbose = false;
  let logLevel: CliLogLevel | null = null;
  const rest: string[] = [];
  while (args.length > 0) {
    const a = args.shift()!;
    if (a === "--verbose" || a === "-v") verbose = true;
    else if (a === "--log-level" || a.startsWith("--log-level=")) {
      const v = a === "--log-level" ? args.shift() : a.slice("--log-level=".length);
      if (v === undefined || v.startsWith("--")) throw new UsageError("--log-level needs a value");
      if (!(LOG_LEVELS as readonly string[]).includes(v))
        throw new UsageError(`--log-level is one of ${LOG_LEVELS.join(", ")}, not "${v}"`);
      logLevel = v as CliLogLevel;
    } else rest.push(a);
  }
  if (verbose && logLevel !== null && logLevel !== "debug") {
    throw new UsageError(`--verbose logs at the debug level; it contradicts --log-level ${logLevel}`);
  }
  const cmd = rest.shift();
  if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
    const topic = cmd === "help" ? rest[0] : undefined;
    if (topic === "serve" || topic === "list" || topic === "describe") return { kind: "help", topic };
    if (topic !== undefined)
      throw new UsageError(`no help on "${topic}": commands are serve, list and describe`);
    return { kind: "help", topic: "main" };
  }
  if (cmd === "list") {
    if (rest.includes("--help") || rest.includes("-h")) return { kind: "help", topic: "list" };
    const options = rest.includes("--options");
    const others = rest.filter((a) => a !== "--options");
    if (others.length > 0) throw new UsageError(`"vfu list" takes only --options (got ${others.join(" ")})`);
    return { kind: "list", options };
  }
  if (cmd === "describe") {
    if (rest.includes("--help") || rest.includes("-h")) return { kind: "help", topic: "describe" };
    const json = rest.includes("--json");
    const others = rest.filter((a) => a !== "--json");
    const device = others.shift();
    if (device === undefined || device.startsWith("-")) {
      throw new UsageError(
        device === undefined
          ? 'describe needs a device name (see "vfu list")'
          : `unknown argument "${device}" (see "vfu describe --help")`,
      );
    }
    if (others.length > 0) throw new UsageError(`"vfu describe" takes one device (got ${others.join(" ")})`);
    return { kind: "describe", device, json };
  }
  if (cmd !== "serve") throw new UsageError(`unknown command "${cmd}": use serve, list, describe or help`);
  if (rest.includes("--help") || rest.includes("-h")) return { kind: "help", topic: "serve" };

  const targets: ServeTarget[] = [];
  let cur: ServeTarget | null = null;
  const take = (flag: string): string => {
    const v = rest.shift();
    if (v === undefined || v.startsWith("--")) throw new UsageError(`${flag} needs a value`);
    return v;
  };
  const startTarget = (): void => {
    const device = rest.shift();
    if (device === undefined || device.startsWith("-"))
      throw new UsageError('serve needs a device name (see "vfu list") or a device file (./my-device.mjs)');
    cur = {
      device,
      socket: "",
      set: {},
      mode: 0o600,
      dmaLayout: "spec",
      writeMultiple: true,
      mmap: true,
      allowUnsealedDmaFds: false,
    };
    targets.push(cur);
  };
  startTarget();
  while (rest.length > 0) {
    const a = rest.shift()!;
    const t = cur!;
    if (a === "serve") {
      startTarget();
    } else if (a === "--socket") {
      t.socket = take(a);
    } else if (a === "--set") {
      const kv = take(a);
      const eq = kv.indexOf("=");
      if (eq <= 0) throw new UsageError(`--set takes key=value, not "${kv}"`);
      t.set[kv.slice(0, eq)] = kv.slice(eq + 1);
    } else if (a === "--mode") {
      const m = take(a);
      if (!/^0?[0-7]{3}$/.test(m))
        throw new UsageError(`--mode takes octal permission bits like 0600, not "${m}"`);
      t.mode = Number.parseInt(m, 8);
    } else if (a === "--dma-layout") {
      const l = take(a);
      if (l !== "spec" && l !== "qemu-10.1")
        throw new UsageError(`--dma-layout is "spec" or "qemu-10.1", not "${l}"`);
      t.dmaLayout = l;
    } else if (a === "--no-write-multiple") {
      t.writeMultiple = false;
    } else if (a === "--no-mmap") {
      t.mmap = false;
    } else if (a === "--allow-unsealed-dma-fds") {
      t.allowUnsealedDmaFds = true;
    } else {
      throw new UsageError(`unknown argument "${a}" (see "vfu serve --help")`);
    }
  }
  const sockets = new Set<string>();
  for (const t of targets) {
    if (!t.socket) throw new UsageError(`serve ${t.device}: --socket <path> is required`);
    if (sockets.has(t.socket)) throw new UsageError(`socket ${t.socket} is given to two devices`);
    sockets.add(t.socket);
  }
  return { kind: "serve", targets, verbose, logLevel: verbose ? "debug" : (logLevel ?? "info") };
}
