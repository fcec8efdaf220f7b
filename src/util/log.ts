// A small leveled logger: one line per event on stderr, prefixed with the component that wrote it.
// Devices receive one as `ctx.log`; `--verbose` turns on the `debug` level, where every vfio-user
// message is logged. Tests pass a `MemoryLog` to assert on what was logged.

export type LogLevel = "error" | "warn" | "info" | "debug";

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
  /** A logger whose lines carry `prefix` after this one's. */
  child(prefix: string): Logger;
  readonly debugEnabled: boolean;
}

export interface LogSink {
  write(level: LogLevel, line: string): void;
}

export class StderrSink implements LogSink {
  write(level: LogLevel, line: string): void {
    process.stderr.write(`${new Date().toISOString()} ${level.padEnd(5)} ${line}\n`);
  }
}

/** Keeps lines in memory (tests). */
export class MemorySink implements LogSink {
  readonly lines: { level: LogLevel; line: string }[] = [];
  write(level: LogLevel, line: string): void {
    this.lines.push({ level, line });
  }
  text(): string {
    return this.lines.map((l) => `${l.level} ${l.line}`).join("\n");
  }
}

export class SinkLogger implements Logger {
  readonly #sink: LogSink;
  readonly #level: LogLevel;
  readonly #prefix: string;

  constructor(sink: LogSink, level: LogLevel = "info", prefix = "") {
    this.#sink = sink;
    this.#level = level;
    this.#prefix = prefix;
  }

  get debugEnabled(): boolean {
    return RANK[this.#level] >= RANK.debug;
  }

  #emit(level: LogLevel, message: string): void {
    if (RANK[level] <= RANK[this.#level])
      this.#sink.write(level, this.#prefix ? `${this.#prefix} ${message}` : message);
  }

  error(message: string): void {
    this.#emit("error", message);
  }
  warn(message: string): void {
    this.#emit("warn", message);
  }
  info(message: string): void {
    this.#emit("info", message);
  }
  debug(message: string): void {
    this.#emit("debug", message);
  }
  child(prefix: string): Logger {
    return new SinkLogger(this.#sink, this.#level, this.#prefix ? `${this.#prefix} ${prefix}` : prefix);
  }
}

/** Logs nothing (the default for embedded use and tests that do not look). */
export const silentLogger: Logger = new SinkLogger({ write() {} }, "error");

export function stderrLogger(level: LogLevel = "info", prefix = ""): Logger {
  return new SinkLogger(new StderrSink(), level, prefix);
}
