// Fd hygiene helpers. Every received fd has one owner; whoever does not keep an fd closes it here.
import { readdirSync } from "node:fs";
import { native } from "../../native/index.ts";

/** Close every fd in the list, ignoring ones already closed. */
export function closeFds(fds: readonly number[]): void {
  for (const fd of fds) {
    if (fd < 0) continue;
    try {
      native.close(fd);
    } catch {
      // already closed: nothing left to release
    }
  }
}

/** The number of fds this process has open (from /proc/self/fd). */
export function openFdCount(): number {
  // readdir itself holds one fd while it reads; it is closed again before this returns.
  return readdirSync("/proc/self/fd").length - 1;
}
