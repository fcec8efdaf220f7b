// A listening UNIX socket that hands out accepted connections. The socket file is created with
// the given mode; an existing path is replaced only when it is a stale socket (nothing accepts
// on it): a live socket or any other kind of file is never removed, and the error names the path.
//
// OWNERSHIP: the listening fd is this object's; each accepted fd moves into the
// SocketConnection passed to `onConnection`.
import { lstatSync, unlinkSync } from "node:fs";
import { native, PollEvent, type PollerInstance } from "../../native/index.ts";
import type { ConnectionOptions } from "./connection.ts";
import { SocketConnection } from "./socket-connection.ts";

export class UnixListener {
  readonly path: string;
  readonly #fd: number;
  readonly #poller: PollerInstance;
  #closed = false;

  constructor(
    path: string,
    mode: number,
    connectionOptions: ConnectionOptions & { readBufferSize?: number },
    onConnection: (conn: SocketConnection) => void,
    onError: (err: Error) => void,
  ) {
    this.path = path;
    prepareSocketPath(path);
    this.#fd = native.listenUnix(path, 16, mode);
    this.#poller = new native.Poller(this.#fd, (status) => {
      if (status < 0 || this.#closed) return;
      for (;;) {
        let fd: number | null;
        try {
          fd = native.accept(this.#fd);
        } catch (err) {
          onError(err as Error);
          return;
        }
        if (fd === null) return;
        onConnection(new SocketConnection(fd, connectionOptions));
      }
    });
    this.#poller.start(PollEvent.READABLE);
  }

  /** Stop listening and remove the socket file. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#poller.close();
    native.close(this.#fd);
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

/** Make `path` free for a new socket, or throw a message naming why it is not. */
export function prepareSocketPath(path: string): void {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw new Error(`cannot inspect socket path ${path}: ${(err as Error).message}`);
  }
  if (!st.isSocket()) {
    throw new Error(`${path} exists and is not a socket; refusing to remove it`);
  }
  let probe: number;
  try {
    probe = native.connectUnix(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ECONNREFUSED") {
      unlinkSync(path); // stale: nothing accepts on it
      return;
    }
    throw new Error(`cannot probe existing socket ${path}: ${(err as Error).message}`);
  }
  native.close(probe);
  throw new Error(`${path} is in use by a running server; choose another socket path`);
}

/** Connect to a server's socket. */
export function connectUnix(path: string, options: ConnectionOptions): SocketConnection {
  return new SocketConnection(native.connectUnix(path), options);
}
