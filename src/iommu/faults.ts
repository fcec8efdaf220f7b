// A DMA that cannot be done is a typed fault, never a crash: the device sees a rejected promise
// (read/write) or a thrown DmaFault (view/sg) it can turn into a device-level error (an NVMe data
// transfer error, an edu status bit). Every fault is counted per device and logged (ctx.dma).
//
// Kinds, and the errno a fault carries when it has to become a reply:
//   unmapped        no area covers an address of the range (or the area is being unmapped)  ENOENT
//   permission      the area does not allow the access (a write to a read-only map)          EPERM
//   out-of-range    a length that is negative, too large, or a range that wraps past 2^64    EINVAL
//   bus-master-off  the device's bus gate is closed (PCI COMMAND.MASTER clear)              ENODEV
//   not-mappable    a zero-copy view was asked of memory that cannot be viewed: message-    EOPNOTSUPP
//                   backed memory, a trapped peer region, a range crossing areas or a 1 GiB
//                   window edge (use read/write or sg instead)
//   no-client       no client is connected                                                   ENOTCONN
//   transfer        the transfer itself failed: a DMA_READ/WRITE the client refused or      EIO
//                   never answered, a peer region's handler that threw, an mmap that failed

import { Errno, ErrnoError } from "../../protocol/index.ts";

export type DmaFaultKind =
  | "unmapped"
  | "permission"
  | "out-of-range"
  | "bus-master-off"
  | "not-mappable"
  | "no-client"
  | "transfer";

export const DMA_FAULT_KINDS: readonly DmaFaultKind[] = [
  "unmapped",
  "permission",
  "out-of-range",
  "bus-master-off",
  "not-mappable",
  "no-client",
  "transfer",
];

const ERRNO: Record<DmaFaultKind, number> = {
  unmapped: Errno.ENOENT,
  permission: Errno.EPERM,
  "out-of-range": Errno.EINVAL,
  "bus-master-off": Errno.ENODEV, // what QEMU answers for a DMA while bus mastering is off
  "not-mappable": Errno.EOPNOTSUPP,
  "no-client": Errno.ENOTCONN,
  transfer: Errno.EIO,
};

export class DmaFault extends ErrnoError {
  readonly kind: DmaFaultKind;
  readonly iova: bigint;
  readonly length: number;
  constructor(kind: DmaFaultKind, iova: bigint, length: number, detail: string) {
    super(ERRNO[kind], `DMA fault (${kind}) at 0x${iova.toString(16)}+${length}: ${detail}`);
    this.name = "DmaFault";
    this.kind = kind;
    this.iova = iova;
    this.length = length;
  }
}
