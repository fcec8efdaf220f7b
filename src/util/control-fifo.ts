// A runtime control channel for a device model: a named pipe (FIFO) the server reads text
// commands from, one per line, so a shell can talk to a device while a guest runs:
//
//   vfu serve gpio-idio16 --socket /tmp/gpio.sock --set control=/tmp/gpio.ctl &
//   echo "input 3 1" > /tmp/gpio.ctl
//
// What the lines mean is the device's business (gpio-idio16 drives its inputs, bochs-display
// saves its framebuffer as PNG); this file only delivers complete lines. `openControlChannel`
// adds what every device wants around it: run each line, log what it did at debug level and a
// malformed line as a warning (the channel stays open).
//
// The FIFO is opened read-write and non-blocking, so opening never waits for a writer and the
// last writer closing is no end-of-file: any number of `echo`s may come and go. It is created
// (mode 0600, with mkfifo(1)) when the path does not exist, and then removed again on close; an
// existing FIFO is used as it is and left in place; any other kind of file is refused.
// OWNERSHIP: the channel owns the fd it opens; `close()` releases it.
import { execFileSync } from "node:child_process";
import { closeSync, constants, lstatSync, openSync, rmSync } from "node:fs";
import { Socket } from "node:net";
import type { Logger } from "./log.ts";

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

/** Open the control FIFO at `path` and run every line through `run`, which returns what it did
 * (logged at debug level; "" for nothing) or throws on a bad line (logged as a warning). A
 * returned promise is awaited the same way. */
export function openControlChannel(
  path: string,
  run: (line: string) => string | Promise<string>,
  log: Logger,
): ControlFifo {
  const report = (err: unknown) => log.warn(`control ${path}: ${(err as Error).message}`);
  return new ControlFifo(
    path,
    (line) => {
      try {
        const did = run(line);
        if (typeof did === "string") {
          if (did) log.debug(`control: ${did}`);
        } else {
          did.then((text) => text && log.debug(`control: ${text}`), report);
        }
      } catch (err) {
        report(err);
      }
    },
    log,
  );
}
