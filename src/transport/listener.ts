// A listening UNIX socket that hands out accepted connections. The socket file is created with
// the given mode; an existing path is replaced only when it is a stale socket of ours (owned by
// our uid, nothing accepts on it): a live socket, another user's socket or any other kind of file
// is never removed, and the error names the path. On close the file is removed only if it is still
// the socket we created (same device and inode): a path someone replaced meanwhile stays.
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
  /** Identity of the socket file we created, so close() removes nothing else. */
  readonly #file: { dev: number; ino: number } | null;
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
    let file: { dev: number; ino: number } | null = null;
    try {
      const st = lstatSync(path);
      file = { dev: st.dev, ino: st.ino };
    } catch {
      // removed already: close() then has nothing to remove
    }
    this.#file = file;
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
      const st = lstatSync(this.path);
      if (st.isSocket() && this.#file && st.dev === this.#file.dev && st.ino === this.#file.ino) {
        unlinkSync(this.path);
      }
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
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new Error(`${path} is a socket of uid ${st.uid}, not ours (uid ${uid}); refusing to remove it`);
  }
  let probe: number;
  try {
    probe = native.connectUnix(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ECONNREFUSED") {
      // Stale: nothing accepts on it. Remove it only if it is still the file we looked at.
      const now = lstatSync(path, { throwIfNoEntry: false });
      if (!now) return;
      if (!now.isSocket() || now.dev !== st.dev || now.ino !== st.ino) {
        throw new Error(`${path} changed while it was being checked; refusing to remove it`);
      }
      unlinkSync(path);
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
