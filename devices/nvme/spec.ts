// NVMe constants this model uses, named as the NVM Express Base Specification 1.4 names them:
// BAR0 register offsets and fields, opcodes, status codes, feature and log page identifiers.
// Nothing here has behaviour; the entity files (controller, queues, admin, io…) import it.

/** BAR0 registers (Controller Properties). 4- and 8-byte accesses. */
export const Reg = {
  CAP: 0x00, //    RO    Controller Capabilities (64-bit)
  VS: 0x08, //     RO    Version: 1.4.0
  INTMS: 0x0c, //  RW1S  Interrupt Mask Set (INTx/MSI only)
  INTMC: 0x10, //  RW1C  Interrupt Mask Clear
  CC: 0x14, //     RW    Controller Configuration
  CSTS: 0x1c, //   RO    Controller Status (NSSRO is RW1C, unused)
  AQA: 0x24, //    RW    Admin Queue Attributes
  ASQ: 0x28, //    RW    Admin Submission Queue base (64-bit)
  ACQ: 0x30, //    RW    Admin Completion Queue base (64-bit)
  DOORBELLS: 0x1000, // WO SQ y tail at 0x1000 + 2y*(4<<DSTRD), CQ y head at + (2y+1)*(4<<DSTRD)
} as const;

export const NVME_VERSION = 0x0001_0400;

export const Cc = {
  EN: 1 << 0,
  CSS_SHIFT: 4, // 3 bits: 0 = NVM command set
  MPS_SHIFT: 7, // 4 bits: page size 2^(12+MPS)
  AMS_SHIFT: 11,
  SHN_SHIFT: 14, // 2 bits: 01 normal, 10 abrupt
  IOSQES_SHIFT: 16,
  IOCQES_SHIFT: 20,
} as const;

export const Csts = {
  RDY: 1 << 0,
  CFS: 1 << 1,
  SHST_SHIFT: 2, // 00 normal, 01 in progress, 10 complete
  SHST_MASK: 3 << 2,
  SHST_COMPLETE: 2 << 2,
  SHST_OCCURRING: 1 << 2,
} as const;

export const PAGE_SIZE = 4096;
export const SQE_SIZE = 64;
export const CQE_SIZE = 16;

export const AdminOp = {
  DELETE_SQ: 0x00,
  CREATE_SQ: 0x01,
  GET_LOG_PAGE: 0x02,
  DELETE_CQ: 0x04,
  CREATE_CQ: 0x05,
  IDENTIFY: 0x06,
  ABORT: 0x08,
  SET_FEATURES: 0x09,
  GET_FEATURES: 0x0a,
  ASYNC_EVENT: 0x0c,
  DOORBELL_BUFFER_CONFIG: 0x7c,
} as const;

export const IoOp = {
  FLUSH: 0x00,
  WRITE: 0x01,
  READ: 0x02,
  WRITE_ZEROES: 0x08,
  DSM: 0x09,
} as const;

/** Status Code Type (bits 27:25 of CQE DW3) << 8 | Status Code: one number per status. */
export const Status = {
  SUCCESS: 0x000,
  INVALID_OPCODE: 0x001,
  INVALID_FIELD: 0x002,
  DATA_TRANSFER_ERROR: 0x004,
  INTERNAL_ERROR: 0x006,
  ABORT_REQUESTED: 0x007,
  ABORTED_SQ_DELETION: 0x008,
  INVALID_NAMESPACE: 0x00b,
  COMMAND_SEQUENCE_ERROR: 0x00c,
  INVALID_SGL_SEGMENT_DESCRIPTOR: 0x00d,
  INVALID_SGL_DESCRIPTOR_COUNT: 0x00e,
  DATA_SGL_LENGTH_INVALID: 0x00f,
  SGL_DESCRIPTOR_TYPE_INVALID: 0x011,
  INVALID_PRP_OFFSET: 0x013,
  LBA_OUT_OF_RANGE: 0x080,
  // Command specific (SCT 1)
  CQ_INVALID: 0x100,
  INVALID_QUEUE_ID: 0x101,
  INVALID_QUEUE_SIZE: 0x102,
  ABORT_LIMIT_EXCEEDED: 0x103,
  AER_LIMIT_EXCEEDED: 0x105,
  INVALID_INTERRUPT_VECTOR: 0x108,
  INVALID_LOG_PAGE: 0x109,
  INVALID_QUEUE_DELETION: 0x10c,
  FEATURE_NOT_SAVEABLE: 0x10d,
} as const;

/** A command ended with this status (thrown by the parsers and handlers, caught per command). */
export class NvmeStatus extends Error {
  readonly status: number;
  constructor(status: number, message = "") {
    super(`NVMe status 0x${status.toString(16)}${message ? `: ${message}` : ""}`);
    this.status = status;
  }
}

export const Feature = {
  ARBITRATION: 0x01,
  POWER_MANAGEMENT: 0x02,
  TEMPERATURE_THRESHOLD: 0x04,
  ERROR_RECOVERY: 0x05,
  VOLATILE_WRITE_CACHE: 0x06,
  NUMBER_OF_QUEUES: 0x07,
  INTERRUPT_COALESCING: 0x08,
  INTERRUPT_VECTOR_CONFIG: 0x09,
  WRITE_ATOMICITY: 0x0a,
  ASYNC_EVENT_CONFIG: 0x0b,
} as const;

export const LogPage = {
  ERROR: 0x01,
  SMART: 0x02,
  FIRMWARE_SLOT: 0x03,
} as const;

/** Offsets in a 64-byte submission queue entry. */
export const Sqe = {
  OPC: 0, // u8
  FLAGS: 1, // u8: FUSE 1:0, PSDT 7:6
  CID: 2, // u16
  NSID: 4,
  MPTR: 16,
  PRP1: 24,
  PRP2: 32,
  CDW10: 40,
  CDW11: 44,
  CDW12: 48,
  CDW13: 52,
  CDW14: 56,
  CDW15: 60,
} as const;
