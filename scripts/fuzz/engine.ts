// The fuzz engine: drives every device model of devices/index.ts with random and mutated
// vfio-user messages, through the in-memory pair and through real UNIX sockets with real fds,
// and checks the server's properties while it runs. Importable by tests (test/fuzz/) and run
// from the command line by scripts/fuzz/main.ts.
//
// One run is a sequence of connections. Each connection picks a transport and a device, opens,
// negotiates VERSION (sometimes after bad VERSIONs, sometimes not at all), then sends bursts:
// 1..32 messages (now and then a few hundred, to hit the session's back-pressure), each burst
// followed by a probe (DEVICE_GET_INFO) whose success proves the session went on. The
// connection ends with a clean close, a stream breaker (bad msg_size or type: the server must
// close), or half a message and a stall followed by the client leaving.
//
// Properties (each failure becomes a finding with the burst that caused it):
// - crash: an exception escaped to the process (uncaughtException / unhandledRejection), or the
//   server logged an internal error (a handler threw something that was not a protocol error);
// - hang: a burst or a teardown did not complete within `hangTimeoutMs`;
// - violation: a reply property failed (see harness.ts), or the server closed a connection it
//   had no reason to close;
// - leak: at a quiet point (no connection open, every session torn down, the harness's fds
//   closed) the process holds more fds than at the start;
// - memory: RSS grew more than `maxRssGrowthMiB` over the run.
//
// Reproduction: the message stream depends only on the seed, so `--seed S --count N` replays a
// run exactly (server timing only decides when a DMA request is answered, from its own stream).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { deviceModels } from "../../devices/index.ts";
import { native } from "../../native/index.ts";
import type { DeviceDefinition } from "../../src/device/definition.ts";
import { Device, type DeviceModel } from "../../src/device/device.ts";
import { DeviceDma } from "../../src/iommu/dma.ts";
import { Limits } from "../../src/server/limits.ts";
import { Endpoint, serveConnection } from "../../src/server/server.ts";
import type { Session } from "../../src/server/session.ts";
import type { Connection } from "../../src/transport/connection.ts";
import { createMemoryPair } from "../../src/transport/memory-pair.ts";
import { SocketConnection } from "../../src/transport/socket-connection.ts";
import { openFdCount } from "../../src/util/fds.ts";
import { type Logger, type LogLevel, SinkLogger } from "../../src/util/log.ts";
import { describeFdKind, FdFactory } from "./fds.ts";
import { type DeviceShape, type FuzzMessage, Generator } from "./generate.ts";
import { Conversation } from "./harness.ts";
import { Rng } from "./rng.ts";
import { loadSeeds, type SeedSet } from "./seeds.ts";

export type TransportKind = "memory" | "socket";

export interface FuzzOptions {
  seed: number;
  /** Stop after this many messages (probes and negotiation included). */
  count?: number;
  /** Stop after this many seconds. Without count or seconds: 10 s. */
  seconds?: number;
  /** Transports to rotate through, with weights (default memory 3, socket 1). */
  transports?: Partial<Record<TransportKind, number>>;
  /** Device models to fuzz (default: every model in devices/index.ts). */
  devices?: readonly DeviceDefinition[];
  /** How long a burst or a teardown may take before it counts as a hang (default 10 s). */
  hangTimeoutMs?: number;
  maxRssGrowthMiB?: number;
  /** Progress lines (stderr in the CLI). */
  progress?: (line: string) => void;
  progressEveryMs?: number;
  /** Most findings kept in the result (each holds its burst). */
  maxFindings?: number;
}

export type FindingKind = "crash" | "hang" | "violation" | "leak" | "memory";

export interface Finding {
  kind: FindingKind;
  detail: string;
  seed: number;
  connection: number;
  burst: number;
  transport: TransportKind;
  device: string;
  /** The burst that was in flight, as hex messages with their fd kinds. */
  messages: { label: string; hex: string; fds: string[] }[];
}

export interface FuzzResult {
  executed: number;
  crashes: number;
  hangs: number;
  leakedFds: number;
  /** Mappings of client memfds left after every session ended. */
  leakedMappings: number;
  violations: number;
  maxRssMiB: number;
  rssStartMiB: number;
  rssEndMiB: number;
  /** JavaScript heap in use after a full GC, at the start and the end. */
  heapUsedStartMiB: number;
  heapUsedEndMiB: number;
  seconds: number;
  messagesPerSec: number;
  seed: number;
  connections: number;
  bursts: number;
  byTransport: Record<TransportKind, number>;
  devices: string[];
  seeds: number;
  findings: Finding[];
}

const MiB = 1024 * 1024;

/** Build a device from its definition the way `vfu serve` does. */
export function instantiate(def: DeviceDefinition, dma: DeviceDma, log: Logger): DeviceModel {
  return new Device(def, { dma, log });
}

/** What the generator needs to know about a device, read from the model. */
export function shapeOf(model: DeviceModel): DeviceShape {
  const regions: DeviceShape["regions"] = [];
  for (let i = 0; i < model.numRegions; i++) {
    const r = model.region(i);
    if (r) regions.push({ index: i, size: r.size, accessSizes: r.spec.accessSizes ?? null });
  }
  const irqs: DeviceShape["irqs"] = [];
  for (let i = 0; i < model.irqs.numIrqs; i++) irqs.push({ index: i, count: model.irqs.info(i).count });
  return { name: model.name, numRegions: model.numRegions, regions, numIrqs: model.irqs.numIrqs, irqs };
}

/** Counts what the server logs; an error line is an internal error (a finding). */
class CountingSink {
  errors: string[] = [];
  warnings = 0;
  write(level: LogLevel, line: string): void {
    if (level === "error") this.errors.push(line);
    else if (level === "warn") this.warnings++;
  }
}

interface Target {
  def: DeviceDefinition;
  shape: DeviceShape;
  /** In-memory: one device reused by every session, as an endpoint does. */
  memory: { model: DeviceModel; dma: DeviceDma };
  socket: Endpoint | null;
}

interface Link {
  conv: Conversation;
  /** The server's session (in socket mode it appears after accept). */
  session: Promise<Session>;
}

/** A full GC, also when node was started without --expose-gc (the flag can be set at run time;
 * a fresh context then sees the `gc` function). */
export const collectGarbage: () => void = (() => {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
})();

/** Mappings of this process whose file name contains `name` (from /proc/self/maps). The
 * fuzzer's memfds are named "vfu-fuzz…": once every session is torn down none may stay mapped,
 * and a leaked mapping holds no fd, so the fd count alone would not see it. */
export function mappingsOf(name: string): number {
  let n = 0;
  for (const line of readFileSync("/proc/self/maps", "latin1").split("\n")) if (line.includes(name)) n++;
  return n;
}

/** Growth of the heap in use (after GC) over a run that counts as a leak. */
const MAX_HEAP_GROWTH_MIB = 64;

function heapMiB(): number {
  return process.memoryUsage().heapUsed / MiB;
}

function rssMiB(): number {
  return process.memoryUsage().rss / MiB;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), ms);
    }),
  ]);
}

export class FuzzEngine {
  readonly #opts: Required<Omit<FuzzOptions, "count" | "seconds" | "devices" | "progress">> &
    Pick<FuzzOptions, "count" | "seconds" | "progress">;
  readonly #rng: Rng;
  readonly #dmaRng: Rng;
  readonly #sink = new CountingSink();
  readonly #log: Logger;
  readonly #fds = new FdFactory();
  readonly #seeds: SeedSet;
  readonly #targets: Target[] = [];
  readonly #socketDir: string;
  readonly #defs: readonly DeviceDefinition[];
  #executed = 0;
  #connections = 0;
  #bursts = 0;
  readonly #byTransport: Record<TransportKind, number> = { memory: 0, socket: 0 };
  readonly #findings: Finding[] = [];
  readonly #counts: Record<FindingKind, number> = { crash: 0, hang: 0, violation: 0, leak: 0, memory: 0 };
  #leaked = 0;
  #escaped: unknown[] = [];
  #errorsSeen = 0;
  #maxRss = 0;
  // context of the burst in flight, for findings
  #ctx = { connection: 0, burst: 0, transport: "memory" as TransportKind, device: "" };
  #inFlight: FuzzMessage[] = [];

  constructor(opts: FuzzOptions) {
    this.#opts = {
      seed: opts.seed >>> 0,
      count: opts.count,
      seconds: opts.seconds ?? (opts.count === undefined ? 10 : undefined),
      transports: opts.transports ?? { memory: 3, socket: 1 },
      // A client that leaves a DMA request unanswered and then unmaps the area legitimately holds
      // its own unmap for up to the request timeout, so a hang is twice that.
      hangTimeoutMs: opts.hangTimeoutMs ?? 2 * Limits.requestTimeoutMs,
      maxRssGrowthMiB: opts.maxRssGrowthMiB ?? 512,
      progress: opts.progress,
      progressEveryMs: opts.progressEveryMs ?? 10000,
      maxFindings: opts.maxFindings ?? 50,
    };
    this.#defs = opts.devices ?? deviceModels;
    const root = new Rng(this.#opts.seed);
    this.#rng = root.fork();
    this.#dmaRng = root.fork();
    this.#log = new SinkLogger(this.#sink, "warn");
    this.#seeds = loadSeeds();
    this.#socketDir = mkdtempSync(join(tmpdir(), "vfu-fuzz-"));
  }

  #setup(): void {
    const wantSocket = (this.#opts.transports.socket ?? 0) > 0;
    for (const def of this.#defs) {
      const dma = new DeviceDma(this.#log);
      const model = instantiate(def, dma, this.#log);
      const socket = wantSocket
        ? new Endpoint((d, l) => instantiate(def, d, l), {
            socketPath: join(this.#socketDir, `${def.name}.sock`),
            log: this.#log,
          })
        : null;
      this.#targets.push({ def, shape: shapeOf(model), memory: { model, dma }, socket });
    }
  }

  async #teardownTargets(): Promise<void> {
    for (const t of this.#targets) {
      t.memory.model.dispose();
      await t.socket?.close();
    }
    this.#targets.length = 0;
  }

  #record(kind: FindingKind, detail: string): void {
    this.#counts[kind]++;
    if (this.#findings.length >= this.#opts.maxFindings) return;
    this.#findings.push({
      kind,
      detail,
      seed: this.#opts.seed,
      ...this.#ctx,
      messages: this.#inFlight.map((m) => ({
        label: m.label,
        hex: Buffer.from(m.bytes).toString("hex"),
        fds: m.fds.map(describeFdKind),
      })),
    });
  }

  /** Exceptions that reached the process and error lines the server logged since the last look. */
  #checkCrashes(): void {
    for (const err of this.#escaped.splice(0)) {
      this.#record(
        "crash",
        `escaped exception: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
      );
    }
    const errors = this.#sink.errors;
    while (this.#errorsSeen < errors.length)
      this.#record("crash", `server error log: ${errors[this.#errorsSeen++]}`);
  }

  #open(t: Target, transport: TransportKind, chunking: number[] | undefined): Link {
    if (transport === "memory") {
      const [client, server] = createMemoryPair(
        { name: "fuzz-client", maxMessageSize: 64 * MiB, maxRecvFds: 64, maxQueuedBytes: 1 << 30 },
        {
          name: "fuzz-server",
          maxMessageSize: Limits.maxMessageSize,
          maxRecvFds: Limits.maxMsgFds,
          maxQueuedBytes: Limits.maxQueuedReplyBytes,
          chunking,
        },
      );
      // The same device serves every in-memory session (its DeviceDma is handed over with it), as an
      // endpoint keeps one device across its clients.
      const model = t.memory.model;
      const session = serveConnection(server, () => model, { dma: t.memory.dma, log: this.#log });
      return { conv: new Conversation(client, this.#dmaRng), session: Promise.resolve(session) };
    }
    const ep = t.socket!;
    const session = new Promise<Session>((resolve) => {
      ep.onSession = (s) => {
        ep.onSession = null;
        resolve(s);
      };
    });
    const fd = native.connectUnix(ep.socketPath);
    const conn: Connection = new SocketConnection(fd, {
      maxMessageSize: 64 * MiB,
      maxRecvFds: 64,
      maxQueuedBytes: 1 << 30,
      name: "fuzz-client",
    });
    return { conv: new Conversation(conn, this.#dmaRng), session };
  }

  #send(conv: Conversation, m: FuzzMessage, opts: { probe?: boolean; breaker?: boolean } = {}): void {
    const fds = m.fds.map((k) => this.#fds.make(k));
    this.#inFlight.push(m);
    conv.send(m.bytes, fds, m.label, opts);
    this.#executed++;
  }

  #done(start: number): boolean {
    const o = this.#opts;
    if (o.count !== undefined && this.#executed >= o.count) return true;
    if (o.seconds !== undefined && performance.now() - start >= o.seconds * 1000) return true;
    return false;
  }

  /** One connection: open, negotiate, bursts, an ending. */
  async #connection(start: number): Promise<void> {
    const r = this.#rng;
    const weights = Object.entries(this.#opts.transports).filter(([, w]) => (w ?? 0) > 0) as [
      TransportKind,
      number,
    ][];
    const transport = r.weighted(weights.map(([k, w]) => [w, k] as const));
    const t = this.#targets[this.#connections % this.#targets.length]!;
    this.#connections++;
    this.#byTransport[transport]++;
    this.#ctx = { connection: this.#connections, burst: 0, transport, device: t.def.name };
    const chunking = r.chance(0.3) ? r.pick([[1], [3, 7], [16], [5, 40, 1], [4096]]) : undefined;
    const gen = new Generator(r.fork(), this.#seeds, t.shape);
    const link = this.#open(t, transport, chunking);
    const { conv } = link;
    this.#inFlight = [];

    // Negotiation: sometimes bad VERSIONs first, rarely no VERSION at all (the server must then
    // answer the first command with an error and close).
    if (r.chance(0.02)) {
      this.#send(conv, gen.notVersion(), { breaker: true });
      await this.#expectClose(conv, link, "a first message other than VERSION");
      return;
    }
    const badFirst = r.chance(0.1);
    if (badFirst) {
      for (let i = r.range(1, 3); i > 0; i--) this.#send(conv, gen.version(false));
    }
    const hello = gen.version(true);
    this.#send(conv, hello);
    // A bad VERSION may still have been accepted (then the good one is refused): the limits the
    // server holds us to are only known when the good one went first.
    const caps = badFirst ? null : this.#capsOf(hello);
    conv.maxDataXferSize = caps?.max_data_xfer_size ?? (badFirst ? Number.MAX_SAFE_INTEGER : MiB);
    conv.maxMsgFds = caps?.max_msg_fds ?? (badFirst ? Number.MAX_SAFE_INTEGER : 1);
    if (!(await this.#settle(conv))) {
      await this.#finish(conv, link);
      return;
    }

    const bursts = r.range(1, 48);
    let ended = false;
    for (let b = 0; b < bursts && !this.#done(start); b++) {
      this.#bursts++;
      this.#ctx.burst = b + 1;
      this.#inFlight = [];
      conv.flushLate();
      const n = r.weighted<() => number>([
        [40, () => r.range(1, 8)],
        [20, () => r.range(8, 32)],
        [1, () => r.range(200, 600)],
      ])();
      const replay = r.chance(0.05) ? gen.replay(n) : [];
      for (const m of replay) this.#send(conv, m);
      for (let i = replay.length; i < n; i++) this.#send(conv, gen.next());
      this.#send(conv, gen.probe(), { probe: true });
      if (!(await this.#settle(conv))) {
        ended = true;
        break;
      }
      this.#fds.release();
    }
    if (!ended && !conv.closed) {
      this.#inFlight = [];
      const ending = r.weighted([
        [90, "close"],
        [6, "break"],
        [4, "stall"],
      ] as const);
      if (ending === "break") {
        const m = gen.breaker();
        this.#send(conv, m, { breaker: true });
        if (m.stream === "truncated") {
          await sleep(1);
        } else {
          await this.#expectClose(conv, link, `stream breaker ${m.stream}`);
          return;
        }
      } else if (ending === "stall") {
        const m = gen.structured();
        this.#send(conv, {
          ...m,
          bytes: m.bytes.subarray(0, r.range(1, m.bytes.length - 1)),
          label: `${m.label}(half)`,
        });
        await sleep(1);
      }
    }
    await this.#finish(conv, link);
  }

  /** The capabilities a (valid) VERSION message states, or null without JSON. */
  #capsOf(version: FuzzMessage): { max_data_xfer_size?: number; max_msg_fds?: number } | null {
    if (version.bytes.length <= 20) return null;
    try {
      const text = new TextDecoder().decode(version.bytes.subarray(20, version.bytes.length - 1));
      return (
        (JSON.parse(text) as { capabilities?: { max_data_xfer_size?: number; max_msg_fds?: number } })
          .capabilities ?? {}
      );
    } catch {
      return null;
    }
  }

  /** Wait for the burst's replies; record what went wrong. Returns false when the connection
   * is no longer usable. */
  async #settle(conv: Conversation): Promise<boolean> {
    const idle = await conv.waitIdle(this.#opts.hangTimeoutMs);
    this.#checkCrashes();
    for (const v of conv.violations.splice(0)) this.#record("violation", v);
    if (conv.closed) {
      this.#record(
        "violation",
        `the server closed the connection (${conv.closeError?.message ?? "EOF"}) with ${conv.waiting} replies missing`,
      );
      return false;
    }
    if (!idle) {
      this.#record(
        "hang",
        `no reply within ${this.#opts.hangTimeoutMs} ms to: ${conv.waitingLabels().slice(0, 8).join(", ")}`,
      );
      return false;
    }
    return true;
  }

  async #expectClose(conv: Conversation, link: Link, why: string): Promise<void> {
    const closed = await conv.waitClosed(this.#opts.hangTimeoutMs);
    this.#checkCrashes();
    for (const v of conv.violations.splice(0)) this.#record("violation", v);
    if (!closed) this.#record("hang", `the server did not close the connection after ${why}`);
    await this.#finish(conv, link);
  }

  /** Close the client end, wait for the server's teardown, then check fds and memory. */
  async #finish(conv: Conversation, link: Link): Promise<void> {
    conv.close();
    const session = await withTimeout(link.session, this.#opts.hangTimeoutMs);
    if (session === "timeout") {
      this.#record("hang", "the server never started a session for this connection");
    } else if ((await withTimeout(session.ended, this.#opts.hangTimeoutMs)) === "timeout") {
      this.#record("hang", "the session did not tear down after the client left");
    }
    this.#fds.release();
    this.#checkCrashes();
    this.#checkFds();
    this.#maxRss = Math.max(this.#maxRss, rssMiB());
  }

  #baselineFds = 0;
  #leakedMappings = 0;

  #checkFds(): void {
    const maps = mappingsOf("memfd:vfu-fuzz");
    if (maps > this.#leakedMappings) {
      this.#record("leak", `${maps} mappings of the client's memfds stay after the session ended`);
      this.#leakedMappings = maps;
    }
    const now = openFdCount();
    if (now > this.#baselineFds) {
      this.#record("leak", `${now - this.#baselineFds} fds more than at the start (${now} open)`);
      this.#leaked += now - this.#baselineFds;
      this.#baselineFds = now; // report each leak once
    }
  }

  async run(): Promise<FuzzResult> {
    const onEscape = (err: unknown) => {
      this.#escaped.push(err);
    };
    process.on("uncaughtException", onEscape);
    process.on("unhandledRejection", onEscape);
    try {
      this.#setup();
      this.#baselineFds = openFdCount();
      collectGarbage();
      const rssStart = rssMiB();
      const heapStart = heapMiB();
      this.#maxRss = rssStart;
      const start = performance.now();
      let lastProgress = start;
      while (!this.#done(start)) {
        await this.#connection(start);
        const now = performance.now();
        if (this.#opts.progress && now - lastProgress >= this.#opts.progressEveryMs) {
          lastProgress = now;
          const s = (now - start) / 1000;
          this.#opts.progress(
            `fuzz: ${s.toFixed(0)} s, ${this.#executed} messages (${Math.round(this.#executed / s)}/s), ` +
              `${this.#connections} connections, crashes ${this.#counts.crash}, hangs ${this.#counts.hang}, ` +
              `violations ${this.#counts.violation}, leaked fds ${this.#leaked}, rss ${rssMiB().toFixed(0)} MiB`,
          );
        }
      }
      const seconds = (performance.now() - start) / 1000;
      // Give late timers (the server's request timeouts) no chance to keep the loop alive.
      await this.#teardownTargets();
      this.#checkCrashes();
      this.#checkFds();
      collectGarbage();
      const rssEnd = rssMiB();
      const heapEnd = heapMiB();
      // RSS after a GC still holds pages V8 and the C allocator keep for reuse (it swings by a few
      // hundred MiB with the large messages); the JavaScript heap in use is what a leak would grow.
      if (rssEnd - rssStart > this.#opts.maxRssGrowthMiB) {
        this.#record("memory", `RSS grew from ${rssStart.toFixed(0)} to ${rssEnd.toFixed(0)} MiB`);
      }
      if (heapEnd - heapStart > MAX_HEAP_GROWTH_MIB) {
        this.#record(
          "memory",
          `the heap in use grew from ${heapStart.toFixed(1)} to ${heapEnd.toFixed(1)} MiB`,
        );
      }
      return {
        executed: this.#executed,
        crashes: this.#counts.crash,
        hangs: this.#counts.hang,
        leakedFds: this.#leaked,
        leakedMappings: this.#leakedMappings,
        violations: this.#counts.violation,
        maxRssMiB: Math.round(Math.max(this.#maxRss, rssEnd) * 10) / 10,
        rssStartMiB: Math.round(rssStart * 10) / 10,
        rssEndMiB: Math.round(rssEnd * 10) / 10,
        heapUsedStartMiB: Math.round(heapStart * 10) / 10,
        heapUsedEndMiB: Math.round(heapEnd * 10) / 10,
        seconds: Math.round(seconds * 100) / 100,
        messagesPerSec: Math.round(this.#executed / seconds),
        seed: this.#opts.seed,
        connections: this.#connections,
        bursts: this.#bursts,
        byTransport: { ...this.#byTransport },
        devices: this.#defs.map((d) => d.name),
        seeds: this.#seeds.messages.length,
        findings: this.#findings,
      };
    } finally {
      await this.#teardownTargets();
      this.#fds.dispose();
      rmSync(this.#socketDir, { recursive: true, force: true });
      process.off("uncaughtException", onEscape);
      process.off("unhandledRejection", onEscape);
    }
  }
}

export function runFuzz(opts: FuzzOptions): Promise<FuzzResult> {
  return new FuzzEngine(opts).run();
}
