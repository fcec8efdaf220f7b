// Errors that carry a vfio-user errno. A handler (or a device model) throws `VfuError` to make the
// session answer with exactly that errno; any other exception becomes EIO and an error log line.
// Every errno-carrying error (VfuError, ProtocolError, FramingError, DmaFault, ClientError) is an
// ErrnoError, and errnos are named from the one table, `Errno` (protocol/constants.ts).
import { Errno, ErrnoError } from "../../protocol/index.ts";

export class VfuError extends ErrnoError {
  constructor(errno: number, message: string) {
    super(errno, message);
    this.name = "VfuError";
  }
}

/** The errno a thrown value should be answered with: an ErrnoError's own, else EIO. */
export function errnoOf(err: unknown): number {
  if (err instanceof ErrnoError && Number.isInteger(err.errno) && err.errno > 0 && err.errno < 4096) {
    return err.errno;
  }
  return Errno.EIO;
}

export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
