// Errors that carry a vfio-user errno. A handler (or a device model) throws `VfuError` to make the
// session answer with exactly that errno; any other exception becomes EIO and an error log line.

export class VfuError extends Error {
  readonly errno: number;
  constructor(errno: number, message: string) {
    super(message);
    this.name = "VfuError";
    this.errno = errno;
  }
}

/** The errno a thrown value should be answered with: its own when it carries one, else EIO (5). */
export function errnoOf(err: unknown): number {
  if (err && typeof err === "object" && "errno" in err) {
    const n = (err as { errno: unknown }).errno;
    if (typeof n === "number" && Number.isInteger(n) && n > 0 && n < 4096) return n;
  }
  return 5;
}

export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
