// The runtime control channel of gpio-idio16: a named pipe (FIFO) the server reads text commands
// from, one per line, so a shell can drive the card's isolated inputs while a guest runs:
//
//   vfu serve gpio-idio16 --socket /tmp/gpio.sock --set control=/tmp/gpio.ctl &
//   echo "input 3 1" > /tmp/gpio.ctl
//
// Commands (words separated by blanks; `#` starts a comment; blank lines are ignored):
//   input <n> <level>   drive isolated input IIN<n> (0-15); level 1/0, high/low or on/off
//   inputs <mask>       drive all sixteen inputs at once, bit n = IIN<n> (e.g. 0x00ff)
//   status              log the outputs, the inputs and the interrupt state (info level)
// A malformed line is logged as a warning and skipped; the channel stays open.
//
// The FIFO is opened read-write and non-blocking, so opening never waits for a writer and the
// last writer closing is no end-of-file: any number of `echo`s may come and go. It is created
// (mode 0600, with mkfifo(1)) when the path does not exist, and then removed again on close; an
// existing FIFO is used as it is and left in place; any other kind of file is refused.
// OWNERSHIP: the channel owns the fd it opens; `close()` releases it.
import { execFileSync } from "node:child_process";
import { closeSync, constants, lstatSync, openSync, rmSync } from "node:fs";
import { Socket } from "node:net";
import type { Logger } from "../../src/index.ts";

export type ControlCommand =
  | { kind: "input"; line: number; high: boolean }
  | { kind: "inputs"; levels: number }
  | { kind: "status" }
  | { kind: "none" };

const LEVELS: Readonly<Record<string, boolean>> = {
  "1": true,
  high: true,
  on: true,
  "0": false,
  low: false,
  off: false,
};

/** Parse one line of the control channel. Throws an Error saying what is wrong with it. */
export function parseControlLine(text: string): ControlCommand {
  const words = text.replace(/#.*/, "").trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return { kind: "none" };
  const [verb, ...args] = words;
  switch (verb!.toLowerCase()) {
    case "input": {
      if (args.length !== 2) throw new Error(`"input" takes a line and a level, e.g. "input 3 1"`);
      const line = Number(args[0]);
      if (!/^\d+$/.test(args[0]!) || line > 15) throw new Error(`input line "${args[0]}" is not 0-15`);
      const high = LEVELS[args[1]!.toLowerCase()];
      if (high === undefined) throw new Error(`level "${args[1]}" is not 1/0, high/low or on/off`);
      return { kind: "input", line, high };
    }
    case "inputs": {
      if (args.length !== 1) throw new Error(`"inputs" takes one mask, e.g. "inputs 0x00ff"`);
      return { kind: "inputs", levels: parseInputMask(args[0]!) };
    }
    case "status":
      if (args.length !== 0) throw new Error(`"status" takes no arguments`);
      return { kind: "status" };
    default:
      throw new Error(`unknown command "${verb}" (input, inputs, status)`);
  }
}

/** A 16-bit input mask written as decimal, 0x hex or 0b binary. Throws on anything else. */
export function parseInputMask(text: string): number {
  const t = text.trim();
  const v = /^(0x[0-9a-f]+|0b[01]+|\d+)$/i.test(t) ? Number(t) : Number.NaN;
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) {
    throw new Error(`"${text}" is not an input mask 0-0xffff (bit n = IIN<n> high)`);
  }
  return v;
}

export class ControlFifo {
  readonly path: string;
  readonly #socket: Socket;
  readonly #created: boolean;
  #buffer = "";
  #closed = false;

  /** Open (creating if absent) the FIFO at `path` and hand every complete line to `onLine`.
   * Throws when the path is something other than a FIFO or cannot be opened. */
  constructor(path: string, onLine: (line: string) => void, log: Logger) {
    this.path = path;
    let created = false;
    let st = lstatOrNull(path);
    if (!st) {
      execFileSync("mkfifo", ["-m", "0600", path], { stdio: ["ignore", "ignore", "pipe"] });
      created = true;
      st = lstatOrNull(path);
    }
    if (!st?.isFIFO()) throw new Error(`control path ${path} exists and is not a FIFO`);
    let fd = -1;
    try {
      fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
      // Node opens every file close-on-exec. A FIFO fd becomes a libuv pipe: reads are
      // event-driven and never tie up a thread-pool thread.
      this.#socket = new Socket({ fd, readable: true, writable: false });
    } catch (err) {
      if (fd >= 0) closeSync(fd);
      if (created) rmSync(path, { force: true });
      throw err;
    }
    this.#created = created;
    this.#socket.setEncoding("utf8");
    this.#socket.on("data", (chunk: string) => {
      this.#buffer += chunk;
      let nl = this.#buffer.indexOf("\n");
      while (nl >= 0) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        onLine(line);
        nl = this.#buffer.indexOf("\n");
      }
      // A writer that never sends a newline must not grow the buffer without bound.
      if (this.#buffer.length > 4096) {
        log.warn(`control ${path}: dropping ${this.#buffer.length} bytes without a newline`);
        this.#buffer = "";
      }
    });
    this.#socket.on("error", (err) => log.warn(`control ${path}: ${err.message}`));
    // The channel alone does not keep a process alive (the server's socket does).
    this.#socket.unref();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    if (this.#created) rmSync(this.path, { force: true });
  }
}

function lstatOrNull(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}
