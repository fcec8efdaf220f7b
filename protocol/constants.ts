// Numbers of the vfio-user wire protocol: command codes, header flags, errno values and the flag
// words reused from <linux/vfio.h>. Everything is a plain `as const` object so that values are
// ordinary numbers at run time (no const enum), and each table can be searched by name.
// Values are those of the vfio-user specification.

/** Every message starts with a header of this many bytes (msg_id, command, msg_size, flags, error). */
export const HEADER_SIZE = 16;

/** Command codes (header `command`, u16). 14 (DIRTY_PAGES) was removed from the protocol. */
export const Command = {
  VERSION: 1,
  DMA_MAP: 2,
  DMA_UNMAP: 3,
  DEVICE_GET_INFO: 4,
  DEVICE_GET_REGION_INFO: 5,
  DEVICE_GET_REGION_IO_FDS: 6,
  DEVICE_GET_IRQ_INFO: 7,
  DEVICE_SET_IRQS: 8,
  REGION_READ: 9,
  REGION_WRITE: 10,
  DMA_READ: 11,
  DMA_WRITE: 12,
  DEVICE_RESET: 13,
  REGION_WRITE_MULTI: 15,
  DEVICE_FEATURE: 16,
  MIG_DATA_READ: 17,
  MIG_DATA_WRITE: 18,
} as const;
export type CommandCode = (typeof Command)[keyof typeof Command];

/** Header `flags` (u32): bits 0-3 are the message type, then NO_REPLY and ERROR. */
export const HeaderFlag = {
  TYPE_MASK: 0xf,
  COMMAND: 0x0, // type: a request
  REPLY: 0x1, // type: the answer to a request with the same msg_id
  NO_REPLY: 0x10, // in a command: the sender wants no reply, not even an error
  ERROR: 0x20, // in a reply: the command failed, `error` holds the errno
} as const;

/** Linux errno values the protocol carries in the header `error` field. */
/** The largest value of a 64-bit wire field (an iova, a size, an offset). */
export const U64_MAX = 0xffff_ffff_ffff_ffffn;

export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOTTY: 25,
  ENOSPC: 28,
  ENOSYS: 38,
  EOPNOTSUPP: 95,
  ECONNRESET: 104,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
} as const;

/** DEVICE_GET_INFO `flags` (VFIO_DEVICE_FLAGS_*). vfio-user clients look at RESET and PCI. */
export const DeviceFlag = {
  RESET: 0x1,
  PCI: 0x2,
  PLATFORM: 0x4,
  AMBA: 0x8,
  CCW: 0x10,
  AP: 0x20,
  FSL_MC: 0x40,
  CAPS: 0x80,
} as const;

/** DEVICE_GET_REGION_INFO `flags` (VFIO_REGION_INFO_FLAG_*). */
export const RegionFlag = {
  READ: 0x1,
  WRITE: 0x2,
  MMAP: 0x4,
  CAPS: 0x8,
} as const;

/** Region-info capability ids (VFIO_REGION_INFO_CAP_*). */
export const RegionCapId = {
  SPARSE_MMAP: 1,
  TYPE: 2,
  MSIX_MAPPABLE: 3,
} as const;

/** Region indices of a PCI device (VFIO_PCI_*_REGION_INDEX); device-specific regions follow COUNT. */
export const PciRegion = {
  BAR0: 0,
  BAR1: 1,
  BAR2: 2,
  BAR3: 3,
  BAR4: 4,
  BAR5: 5,
  ROM: 6,
  CONFIG: 7,
  VGA: 8,
  COUNT: 9,
} as const;

/** Interrupt indices of a PCI device (VFIO_PCI_*_IRQ_INDEX). */
export const PciIrq = {
  INTX: 0,
  MSI: 1,
  MSIX: 2,
  ERR: 3,
  REQ: 4,
  COUNT: 5,
} as const;

/** DEVICE_GET_IRQ_INFO `flags` (VFIO_IRQ_INFO_*). */
export const IrqInfoFlag = {
  EVENTFD: 0x1,
  MASKABLE: 0x2,
  AUTOMASKED: 0x4,
  NORESIZE: 0x8,
} as const;

/** DEVICE_SET_IRQS `flags`: exactly one DATA_* and exactly one ACTION_* bit (VFIO_IRQ_SET_*). */
export const IrqSetFlag = {
  DATA_NONE: 0x1,
  DATA_BOOL: 0x2,
  DATA_EVENTFD: 0x4,
  DATA_TYPE_MASK: 0x7,
  ACTION_MASK: 0x8,
  ACTION_UNMASK: 0x10,
  ACTION_TRIGGER: 0x20,
  ACTION_TYPE_MASK: 0x38,
} as const;

/** DMA_MAP `flags`: the access the server may make to the mapping. */
export const DmaMapFlag = {
  READ: 0x1,
  WRITE: 0x2,
} as const;

/** DMA_UNMAP `flags`. GET_DIRTY_BITMAP is legacy (migration v1) and changes the body layout. */
export const DmaUnmapFlag = {
  GET_DIRTY_BITMAP: 0x1,
  ALL: 0x2,
} as const;

/** DEVICE_FEATURE `flags`: feature index in the low 16 bits, then the operation bits. */
export const FeatureFlag = {
  INDEX_MASK: 0xffff,
  GET: 1 << 16,
  SET: 1 << 17,
  PROBE: 1 << 18,
} as const;

/** DEVICE_FEATURE indices (VFIO_DEVICE_FEATURE_*) that vfio-user carries. */
export const Feature = {
  MIGRATION: 1,
  MIG_DEVICE_STATE: 2,
  DMA_LOGGING_START: 6,
  DMA_LOGGING_STOP: 7,
  DMA_LOGGING_REPORT: 8,
} as const;

/** Data of the MIGRATION feature (u64 flags, VFIO_MIGRATION_*). */
export const MigrationFlag = {
  STOP_COPY: 0x1,
  P2P: 0x2,
  PRE_COPY: 0x4,
} as const;

/** Device migration states (enum vfio_device_mig_state). A device starts RUNNING. */
export const MigState = {
  ERROR: 0,
  STOP: 1,
  RUNNING: 2,
  STOP_COPY: 3,
  RESUMING: 4,
  RUNNING_P2P: 5,
  PRE_COPY: 6,
  PRE_COPY_P2P: 7,
} as const;

/** DEVICE_GET_REGION_IO_FDS entry `type`. */
export const IoFdType = {
  IOEVENTFD: 0,
  IOREGIONFD: 1,
} as const;

function reverse(table: Readonly<Record<string, number>>): Map<number, string> {
  const names = new Map<number, string>();
  for (const [name, value] of Object.entries(table)) names.set(value, name);
  return names;
}

const commandNames = reverse(Command);
const errnoNames = reverse(Errno);

/** "DMA_MAP" for 2; "UNKNOWN(n)" for a number that is no command. */
export function commandName(n: number): string {
  return commandNames.get(n) ?? `UNKNOWN(${n})`;
}

/** "EINVAL" for 22; "UNKNOWN(n)" for a number this table does not name. */
export function errnoName(n: number): string {
  return errnoNames.get(n) ?? `UNKNOWN(${n})`;
}
