// The typed face of the project's only native code (native/addon.cc, built at `npm install`).
//
// Theory of operation: Node's own sockets drop SCM_RIGHTS fds and Node cannot mmap, so the addon
// owns every vfio-user socket fd (all created O_NONBLOCK|O_CLOEXEC) and reports readiness through
// a uv_poll watcher on Node's loop (`Poller`). Received fds arrive with MSG_CMSG_CLOEXEC set.
// Mappings of client memory are external ArrayBuffers of at most 1 GiB (`MAX_MAP_LENGTH`);
// `unmap` detaches the buffer before munmap, so every stale view reads as empty (byteLength 0)
// instead of faulting.
//
// Errors: every function throws an Error with `code` (e.g. "ENOENT"), `errno` (the positive
// Linux number) and `syscall` set, except where a return value documents EAGAIN.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** Largest single mapping: Node 20 refuses external ArrayBuffers over 4 GiB (and a failed creation
 * double-frees), so client memory is mapped in windows no larger than this. */
export const MAX_MAP_LENGTH = 1024 * 1024 * 1024;

/** Poll event bits as libuv defines them. */
export const PollEvent = {
  READABLE: 1,
  WRITABLE: 2,
  DISCONNECT: 4,
} as const;

export interface RecvResult {
  /** Bytes placed in the buffer; 0 means the peer closed the stream (EOF). */
  bytes: number;
  /** Fds received with these bytes (each already close-on-exec). OWNERSHIP: the caller's. */
  fds: number[];
  /** MSG_CTRUNC: more fds were sent than `maxFds`; the addon has closed every fd it got. */
  ctrunc: boolean;
}

export interface FileStat {
  size: number;
  mode: number;
  blksize: number;
  /** true for regular files, memfds, shm and hugetlbfs files: the only fds worth mmapping */
  isRegular: boolean;
}

/** The process at the other end of a UNIX socket connection (SO_PEERCRED). */
export interface PeerCredentials {
  /** In this process's pid namespace; 0 when the peer is not visible there. */
  pid: number;
  uid: number;
  gid: number;
}

export interface PollerInstance {
  /** (Re)start watching for the given PollEvent bits; replaces the previous set. */
  start(events: number): void;
  stop(): void;
  /** Stops and releases the watcher; the fd itself is not closed. Idempotent. */
  close(): void;
}

export interface PollerConstructor {
  /** `callback(status, events)`: status is 0 or a negative libuv error. An exception thrown by
   * the callback reaches process 'uncaughtException' (it does not abort the process). */
  new (fd: number, callback: (status: number, events: number) => void): PollerInstance;
}

export interface NativeAddon {
  /** socket + bind + listen on a UNIX stream path; the socket file gets `mode`. Returns the fd. */
  listenUnix(path: string, backlog: number, mode: number): number;
  /** accept4(O_NONBLOCK|O_CLOEXEC); null when no connection is pending (EAGAIN). */
  accept(fd: number): number | null;
  /** connect to a UNIX stream path; the returned fd is non-blocking. */
  connectUnix(path: string): number;
  /** socketpair(AF_UNIX, SOCK_STREAM); both ends non-blocking and close-on-exec. */
  socketPair(): [number, number];
  /** SO_PEERCRED of a connected UNIX socket: who was at the other end when it connected. */
  peerCredentials(fd: number): PeerCredentials;
  /** prctl(PR_SET_PDEATHSIG): have the kernel send `signal` when the parent process exits
   * (0 clears it). */
  setParentDeathSignal(signal: number): void;
  /** recvmsg into buf[offset, offset+length) with room for `maxFds` fds; null on EAGAIN. */
  recvMsg(fd: number, buf: Uint8Array, offset: number, length: number, maxFds: number): RecvResult | null;
  /** sendmsg(MSG_NOSIGNAL) of buf[offset, offset+length) with fds attached (the fds stay the
   * caller's: the kernel duplicates them). Returns bytes sent; -1 on EAGAIN. */
  sendMsg(fd: number, buf: Uint8Array, offset: number, length: number, fds: number[]): number;
  close(fd: number): void;
  /** fcntl(F_DUPFD_CLOEXEC): a second fd for the same open file (the in-memory transport uses it
   * to hand the receiver its own copy, as SCM_RIGHTS does). */
  dup(fd: number): number;
  /** mmap(MAP_SHARED) of `length` bytes (1..MAX_MAP_LENGTH) at file offset `offset` (a multiple
   * of the page size). fstat first: a file smaller than offset+length is refused (EINVAL) because
   * touching the missing pages would raise SIGBUS. */
  mmap(fd: number, length: number, offset: number, writable: boolean): ArrayBuffer;
  /** Detach `buffer` (every view of it now has length 0), then munmap. Idempotent. */
  unmap(buffer: ArrayBuffer): void;
  fstat(fd: number): FileStat;
  /** memfd_create(MFD_CLOEXEC|MFD_ALLOW_SEALING), sized with ftruncate; with `seal`, adds
   * F_SEAL_GROW|F_SEAL_SHRINK|F_SEAL_SEAL so the size can never change. */
  memfdCreate(name: string, size: number, seal: boolean): number;
  /** F_GET_SEALS bit set (0 for fds that do not support sealing). */
  getSeals(fd: number): number;
  /** eventfd(initval, EFD_NONBLOCK|EFD_CLOEXEC). */
  eventfd(initval: number): number;
  /** write an 8-byte counter increment; false when the counter would overflow (EAGAIN). */
  eventfdWrite(fd: number, value: number): boolean;
  /** read and clear the 8-byte counter; null when it is 0 (EAGAIN). */
  eventfdRead(fd: number): number | null;
  Poller: PollerConstructor;
}

export const F_SEAL = {
  SEAL: 0x0001,
  SHRINK: 0x0002,
  GROW: 0x0004,
  WRITE: 0x0008,
} as const;

const require = createRequire(import.meta.url);

/** node-gyp builds the addon into <package>/build/Release: one folder above native/index.ts in
 * the sources, two above dist/native/index.js in the published package. */
const ADDON_PATHS = ["../build/Release/vfu_native.node", "../../build/Release/vfu_native.node"];

function load(): NativeAddon {
  const found = ADDON_PATHS.map((p) => fileURLToPath(new URL(p, import.meta.url))).find((p) => existsSync(p));
  try {
    return require(found ?? ADDON_PATHS[0]!) as NativeAddon;
  } catch (err) {
    const e = err as Error;
    throw new Error(
      `the native addon is not built (run \`npm install\` or \`npm run build:native\`): ${e.message}`,
    );
  }
}

export const native: NativeAddon = load();
