// `npm run fuzz -- [--seconds N | --count N] [--seed S] ...`: runs the fuzz engine (engine.ts)
// against every device model and prints ONE JSON line with the result on stdout. Progress goes
// to stderr; findings (with the bursts that caused them) go to --out as JSON files.
// Exit code: 0 when nothing was found, 1 when something was, 2 for a usage error.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { deviceModels } from "../../devices/index.ts";
import { type FuzzOptions, runFuzz, type TransportKind } from "./engine.ts";
import { parseSeed } from "./rng.ts";

const HELP = `usage: npm run fuzz -- [options]

Sends random and mutated vfio-user messages (with fds) to every device model in devices/,
through the in-memory pair and through real UNIX sockets, and checks that the server never
crashes or hangs, answers every command exactly once, goes on after errors, and keeps its
open fds and RSS bounded. Prints one JSON line at the end.

options:
  --seconds N        run for N seconds (default 10 when --count is not given)
  --count N          stop after N messages (with --seed, reproduces a run exactly)
  --seed S           seed (a number or any text; default: random, printed in the JSON)
  --transport T      memory, socket or both (default both: memory 3 : socket 1)
  --device NAME      fuzz only this model (repeatable; default every model)
  --hang-ms N        a burst or teardown slower than this is a hang (default 10000)
  --out DIR          write each finding as DIR/finding-<n>.json
  --quiet            no progress lines
  --help             this text
`;

function usage(message: string): never {
  process.stderr.write(`fuzz: ${message}\n\n${HELP}`);
  process.exit(2);
}

function positive(name: string, value: string | undefined): number {
  const n = Number(value);
  if (value === undefined || !Number.isFinite(n) || n <= 0) usage(`${name} needs a positive number`);
  return n;
}

export function parseFuzzArgs(argv: string[]): { opts: FuzzOptions; out: string | null; help: boolean } {
  const opts: FuzzOptions = {
    seed: (Math.random() * 0x100000000) >>> 0,
    progress: (l) => process.stderr.write(`${l}\n`),
  };
  let out: string | null = null;
  const devices: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes("=")
      ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]
      : [a, undefined];
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined) usage(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--help":
      case "-h":
        return { opts, out, help: true };
      case "--seconds":
        opts.seconds = positive(flag, value());
        break;
      case "--count":
        opts.count = Math.floor(positive(flag, value()));
        break;
      case "--seed":
        opts.seed = parseSeed(value());
        break;
      case "--transport": {
        const t = value();
        if (t === "both") opts.transports = { memory: 3, socket: 1 };
        else if (t === "memory" || t === "socket") opts.transports = { [t as TransportKind]: 1 };
        else usage(`--transport must be memory, socket or both, not ${t}`);
        break;
      }
      case "--device":
        devices.push(value());
        break;
      case "--hang-ms":
        opts.hangTimeoutMs = positive(flag, value());
        break;
      case "--out":
        out = value();
        break;
      case "--quiet":
        opts.progress = undefined;
        break;
      default:
        usage(`unknown argument ${a}`);
    }
  }
  if (devices.length > 0) {
    opts.devices = devices.map((name) => {
      const d = deviceModels.find((m) => m.name === name);
      if (!d) usage(`unknown device ${name} (known: ${deviceModels.map((m) => m.name).join(", ")})`);
      return d;
    });
  }
  return { opts, out, help: false };
}

async function main(): Promise<void> {
  const { opts, out, help } = parseFuzzArgs(process.argv.slice(2));
  if (help) {
    process.stdout.write(HELP);
    return;
  }
  opts.progress?.(
    `fuzz: seed ${opts.seed}, ${opts.count !== undefined ? `${opts.count} messages` : `${opts.seconds ?? 10} s`}`,
  );
  const result = await runFuzz(opts);
  const { findings, ...summary } = result;
  if (out && findings.length > 0) {
    mkdirSync(out, { recursive: true });
    findings.forEach((f, i) => {
      writeFileSync(join(out, `finding-${i + 1}.json`), `${JSON.stringify(f, null, 1)}\n`);
    });
  }
  for (const f of findings.slice(0, 10)) {
    process.stderr.write(
      `finding: ${f.kind} (connection ${f.connection}, burst ${f.burst}, ${f.transport}, ${f.device}): ${f.detail.split("\n")[0]}\n`,
    );
  }
  process.stdout.write(`${JSON.stringify({ ...summary, findings: findings.length })}\n`);
  const bad =
    result.crashes + result.hangs + result.leakedFds + result.leakedMappings + result.violations > 0 ||
    findings.length > 0;
  process.exitCode = bad ? 1 : 0;
}

await main();
