// Stopping with the parent: a server started by a wrapper that does not pass signals on (npm runs
// a command through `sh -c`, and the shell dies of the signal npm forwards instead of handing it
// down) would outlive it and keep its socket. The kernel's parent-death signal (PR_SET_PDEATHSIG)
// turns the parent's exit into a signal this process handles like any other stop request.
import { constants } from "node:os";
import { native } from "../../native/index.ts";

/** Have the kernel send `signal` to this process when its parent exits. If the parent is already
 * gone (this process is no longer the child of `parent`, the pid it started with), the signal is
 * sent now. */
export function signalOnParentExit(signal: NodeJS.Signals, parent: number = process.ppid): void {
  native.setParentDeathSignal(constants.signals[signal]);
  if (process.ppid !== parent) process.kill(process.pid, signal);
}
