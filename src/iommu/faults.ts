// A DMA that cannot be translated is a typed fault, never a crash: the device sees a rejected
// promise it can turn into a device-level error (an NVMe data transfer error, an edu status bit).

export type DmaFaultKind = "unmapped" | "permission" | "out-of-range" | "no-client" | "transfer";

const ERRNO: Record<DmaFaultKind, number> = {
  unmapped: 2, // ENOENT
  permission: 1, // EPERM
  "out-of-range": 22, // EINVAL
  "no-client": 107, // ENOTCONN
  transfer: 5, // EIO
};

export class DmaFault extends Error {
  readonly kind: DmaFaultKind;
  readonly iova: bigint;
  readonly length: number;
  readonly errno: number;
  constructor(kind: DmaFaultKind, iova: bigint, length: number, detail: string) {
    super(`DMA fault (${kind}) at 0x${iova.toString(16)}+${length}: ${detail}`);
    this.name = "DmaFault";
    this.kind = kind;
    this.iova = iova;
    this.length = length;
    this.errno = ERRNO[kind];
  }
}
