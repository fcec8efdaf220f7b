// What a DMA_MAP fd must be before the address space may mmap it. The address space already
// refuses fds that are not memory (sockets, eventfds, directories, devices: Errno.EINVAL) and files
// smaller than offset+size (Errno.EINVAL). This adds the two rules that keep a hostile client from
// hurting the server through memory it shares:
//
// 1. Access mode (Errno.EPERM). The mapping is made with the rights the map asks for, using the fd as
//    given: the server never reopens a file to gain a right the client did not give. An fd opened
//    read-only cannot back a map with WRITE; a write-only fd cannot back any map (every map needs
//    READ); a memfd sealed against writes (F_SEAL_WRITE / F_SEAL_FUTURE_WRITE) cannot be mapped
//    writable either. Refusing at DMA_MAP time turns what would otherwise be a failed mmap at the
//    device's first DMA into a clear errno for the client. An O_PATH fd is no memory at all (Errno.EINVAL).
//
// 2. Size seal (Errno.EINVAL). A client that shrinks a file after the server mapped it makes the next
//    access to the lost pages raise SIGBUS, which kills a Node process (it cannot be caught in
//    JavaScript, and the accesses are plain typed-array reads and writes in device code). Re-checking
//    the size with fstat before each access would only narrow the race, not close it: the client
//    truncates from another process at any moment. So a DMA fd must carry F_SEAL_SHRINK: then the
//    kernel itself refuses every shrink. QEMU's memory-backend-memfd seals its memfds by default
//    (`seal=on`), and the project's client seals the memfds it creates. Files that cannot be sealed
//    (memory-backend-file on /dev/shm or hugetlbfs, memory-backend-shm) are refused unless the
//    endpoint is started with `allowUnsealedDmaFds` for a client that is trusted not to shrink its
//    own RAM (QEMU never does): the SIGBUS risk is then the operator's choice.
import { readFileSync } from "node:fs";
import { F_SEAL, native } from "../../native/index.ts";
import { DmaMapFlag, Errno } from "../../protocol/index.ts";
import { VfuError } from "../util/errors.ts";

const O_ACCMODE = 0o3;
const O_RDONLY = 0o0;
const O_WRONLY = 0o1;
const O_PATH = 0o10000000;
/** F_SEAL_FUTURE_WRITE (Linux 5.1): writable mappings are refused, existing ones keep working. */
const F_SEAL_FUTURE_WRITE = 0x10;

export interface DmaFdPolicy {
  /** Accept fds without F_SEAL_SHRINK (a client that shrinks one then kills the server). */
  allowUnsealed: boolean;
}

/** The open-file flags of one of our fds (O_ACCMODE, O_PATH...), from /proc/self/fdinfo. */
export function fdFlags(fd: number): number {
  const text = readFileSync(`/proc/self/fdinfo/${fd}`, "latin1");
  const m = /^flags:\s*([0-7]+)/m.exec(text);
  if (!m) throw new Error(`no flags line in /proc/self/fdinfo/${fd}`);
  return Number.parseInt(m[1]!, 8);
}

/**
 * Throws VfuError (Errno.EPERM, Errno.EINVAL) when `fd` may not back a DMA map with these `flags`. Fds that
 * are not regular files are left to the address space, which refuses them with Errno.EINVAL.
 * OWNERSHIP: the fd stays the caller's.
 */
export function checkDmaFd(fd: number, flags: number, policy: DmaFdPolicy): void {
  let regular: boolean;
  try {
    regular = native.fstat(fd).isRegular;
  } catch {
    return; // the address space reports the fd it cannot inspect
  }
  if (!regular) return;
  const open = fdFlags(fd);
  if (open & O_PATH) throw new VfuError(Errno.EINVAL, "DMA_MAP fd was opened with O_PATH: it is not memory");
  const mode = open & O_ACCMODE;
  if (mode === O_WRONLY)
    throw new VfuError(Errno.EPERM, "DMA_MAP fd is write-only: the server could not read it");
  const write = (flags & DmaMapFlag.WRITE) !== 0;
  if (write && mode === O_RDONLY) {
    throw new VfuError(Errno.EPERM, "DMA_MAP asks for WRITE but the fd was opened read-only");
  }
  const seals = native.getSeals(fd);
  if (write && seals & (F_SEAL.WRITE | F_SEAL_FUTURE_WRITE)) {
    throw new VfuError(Errno.EPERM, "DMA_MAP asks for WRITE but the memfd is sealed against writes");
  }
  if (!(seals & F_SEAL.SHRINK) && !policy.allowUnsealed) {
    throw new VfuError(
      Errno.EINVAL,
      "DMA_MAP fd is not sealed against shrinking (F_SEAL_SHRINK): a shrink would crash the server " +
        "with SIGBUS. Use a sealed memfd (QEMU: memory-backend-memfd, sealed by default) or start the " +
        "endpoint with allowUnsealedDmaFds for a trusted client",
    );
  }
}
