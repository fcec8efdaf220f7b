// Admin commands (submission queue 0). Each handler reads its fields from the 64-byte command and
// returns a completion, throws NvmeStatus with the status the specification names, or returns
// null (Asynchronous Event Request: held until an event, dropped at a reset). Data goes out with
// PRPs (SGLs are for I/O commands only here: PSDT must be 00).
import type { CommandResult, NvmeController } from "./controller.ts";
import { prpPieces, scatter } from "./prp-sgl.ts";
import { CompletionQueue, SubmissionQueue } from "./queues.ts";
import { AdminOp, Feature, LogPage, NVME_VERSION, NvmeStatus, PAGE_SIZE, Sqe, Status } from "./spec.ts";

export const SERIAL = "VFUNVME0001";
export const MODEL = "vfio-user-node NVMe";
export const FIRMWARE = "0.1";
/** MDTS: 2^5 pages = 128 KiB per command. */
export const MDTS = 5;
export const MAX_TRANSFER = PAGE_SIZE << MDTS;
/** Asynchronous Event Request Limit (0-based: 4 outstanding). */
const AERL = 3;
/** Abort Command Limit (0-based). */
const ACL = 3;
/** The namespace's globally unique id (NGUID) and UUID: fixed, so a second boot sees the same. */
export const NGUID = Uint8Array.from([0x56, 0x46, 0x55, 0x4e, 0x56, 0x4d, 0x45, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
const UUID = Uint8Array.from([
  0x8d, 0x1c, 0x61, 0x3e, 0x3a, 0x4b, 0x4f, 0x6e, 0x9b, 0x1a, 0, 0x56, 0x46, 0x55, 0, 1,
]);

function u32(sqe: Uint8Array, off: number): number {
  return new DataView(sqe.buffer, sqe.byteOffset, sqe.byteLength).getUint32(off, true);
}

function u64(sqe: Uint8Array, off: number): bigint {
  return new DataView(sqe.buffer, sqe.byteOffset, sqe.byteLength).getBigUint64(off, true);
}

function ascii(buf: Uint8Array, off: number, len: number, text: string): void {
  for (let i = 0; i < len; i++) buf[off + i] = i < text.length ? text.charCodeAt(i) : 0x20;
}

/** Copy `data` to the command's PRPs. */
async function dataOut(c: NvmeController, sqe: Uint8Array, data: Uint8Array): Promise<void> {
  if (sqe[1]! & 0xc0) throw new NvmeStatus(Status.INVALID_FIELD, "SGLs in an admin command");
  const read = (iova: bigint, n: number) => c.dma.read(iova, n);
  const pieces = await prpPieces(u64(sqe, Sqe.PRP1), u64(sqe, Sqe.PRP2), data.length, read);
  await scatter(c.dma, pieces, data);
}

export async function handleAdmin(c: NvmeController, sqe: Uint8Array): Promise<CommandResult | null> {
  switch (sqe[Sqe.OPC]) {
    case AdminOp.IDENTIFY:
      return identify(c, sqe);
    case AdminOp.CREATE_CQ:
      return createCq(c, sqe);
    case AdminOp.CREATE_SQ:
      return createSq(c, sqe);
    case AdminOp.DELETE_SQ:
      return deleteSq(c, sqe);
    case AdminOp.DELETE_CQ:
      return deleteCq(c, sqe);
    case AdminOp.GET_FEATURES:
      return getFeatures(c, sqe);
    case AdminOp.SET_FEATURES:
      return setFeatures(c, sqe);
    case AdminOp.GET_LOG_PAGE:
      return getLogPage(c, sqe);
    case AdminOp.ASYNC_EVENT:
      if (c.aers.length > AERL) return { status: Status.AER_LIMIT_EXCEEDED };
      c.aers.push(sqe[2]! | (sqe[3]! << 8));
      return null;
    case AdminOp.ABORT:
      // Commands here are never queued unstarted long enough to abort: "not aborted" (DW0 bit 0).
      return { status: Status.SUCCESS, dw0: 1 };
    case AdminOp.DOORBELL_BUFFER_CONFIG: {
      const dbs = u64(sqe, Sqe.PRP1);
      const eis = u64(sqe, Sqe.PRP2);
      if (dbs === 0n || eis === 0n || dbs & 0xfffn || eis & 0xfffn)
        throw new NvmeStatus(Status.INVALID_FIELD, "shadow doorbell buffers must be page-aligned");
      await c.configureDbbuf(dbs, eis);
      return { status: Status.SUCCESS };
    }
    default:
      throw new NvmeStatus(Status.INVALID_OPCODE, `admin opcode 0x${sqe[0]!.toString(16)}`);
  }
}

async function identify(c: NvmeController, sqe: Uint8Array): Promise<CommandResult> {
  const cns = u32(sqe, Sqe.CDW10) & 0xff;
  const nsid = u32(sqe, Sqe.NSID);
  const out = new Uint8Array(4096);
  const v = new DataView(out.buffer);
  switch (cns) {
    case 0x00: {
      if (nsid !== 1) throw new NvmeStatus(Status.INVALID_NAMESPACE, `namespace ${nsid}`);
      const blocks = c.ns.blocks;
      v.setBigUint64(0, blocks, true); // NSZE
      v.setBigUint64(8, blocks, true); // NCAP
      v.setBigUint64(16, blocks, true); // NUSE
      out[24] = 0; // NSFEAT
      out[25] = 0; // NLBAF: one format
      out[26] = 0; // FLBAS: format 0, no metadata
      out[33] = 0x09; // DLFEAT: deallocated blocks read zero; Write Zeroes may deallocate
      out.set(NGUID, 104);
      v.setUint32(128, c.ns.lbaShift << 16, true); // LBAF0: MS 0, LBADS, RP 0 (best)
      break;
    }
    case 0x01:
      identifyController(out, v);
      break;
    case 0x02: // active namespaces with an id above nsid
      if (nsid >= 0xffff_fffe) throw new NvmeStatus(Status.INVALID_NAMESPACE, `namespace ${nsid}`);
      if (nsid < 1) v.setUint32(0, 1, true);
      break;
    case 0x03: {
      if (nsid !== 1) throw new NvmeStatus(Status.INVALID_NAMESPACE, `namespace ${nsid}`);
      out.set([2, 16, 0, 0], 0); // NGUID
      out.set(NGUID, 4);
      out.set([3, 16, 0, 0], 20); // UUID
      out.set(UUID, 24);
      break;
    }
    default:
      throw new NvmeStatus(Status.INVALID_FIELD, `Identify CNS 0x${cns.toString(16)}`);
  }
  await dataOut(c, sqe, out);
  return { status: Status.SUCCESS };
}

function identifyController(out: Uint8Array, v: DataView): void {
  v.setUint16(0, 0x1234, true); // VID, as the PCI ids
  v.setUint16(2, 0x1234, true); // SSVID
  ascii(out, 4, 20, SERIAL);
  ascii(out, 24, 40, MODEL);
  ascii(out, 64, 8, FIRMWARE);
  out[72] = 6; // RAB
  out[77] = MDTS;
  v.setUint16(78, 1, true); // CNTLID
  v.setUint32(80, NVME_VERSION, true);
  out[111] = 1; // CNTRLTYPE: I/O controller
  v.setUint16(256, 0x0100, true); // OACS: Doorbell Buffer Config
  out[258] = ACL;
  out[259] = AERL;
  out[260] = 0x03; // FRMW: one slot, read-only
  out[261] = 0x00; // LPA
  out[262] = 0; // ELPE: one error log entry
  out[263] = 0; // NPSS: one power state
  v.setUint16(266, 0x0157, true); // WCTEMP 343 K
  v.setUint16(268, 0x0175, true); // CCTEMP 373 K
  out[512] = 0x66; // SQES 64 bytes
  out[513] = 0x44; // CQES 16 bytes
  v.setUint32(516, 1, true); // NN
  v.setUint16(520, 0x000c, true); // ONCS: Dataset Management, Write Zeroes
  out[525] = 0x01; // VWC present
  v.setUint32(536, 0x0000_0001, true); // SGLS: SGLs supported, no alignment requirement
  const nqn = `nqn.2026-01.dev.vfio-user-node:nvme:${SERIAL}`; // SUBNQN: a stable, unique name
  for (let i = 0; i < nqn.length; i++) out[768 + i] = nqn.charCodeAt(i);
  // Power state 0: 9.00 W, entry/exit latency 0.
  v.setUint16(2048, 900, true);
}

async function createCq(c: NvmeController, sqe: Uint8Array): Promise<CommandResult> {
  const dw10 = u32(sqe, Sqe.CDW10);
  const dw11 = u32(sqe, Sqe.CDW11);
  const qid = dw10 & 0xffff;
  const size = (dw10 >>> 16) + 1;
  const pc = (dw11 & 1) !== 0;
  const ien = (dw11 & 2) !== 0;
  const iv = dw11 >>> 16;
  const base = u64(sqe, Sqe.PRP1);
  if (qid === 0 || qid > c.opts.maxIoQueues || c.cqs.has(qid))
    throw new NvmeStatus(Status.INVALID_QUEUE_ID, `CQ ${qid}`);
  if (size < 2 || size > c.opts.maxQueueEntries) throw new NvmeStatus(Status.INVALID_QUEUE_SIZE, `${size}`);
  if (!pc) throw new NvmeStatus(Status.INVALID_FIELD, "CAP.CQR: queues must be physically contiguous");
  if (base & 0xfffn) throw new NvmeStatus(Status.INVALID_PRP_OFFSET, "CQ base is not page-aligned");
  if (iv >= c.opts.vectors || (c.ctx.irq.mode !== "msix" && iv > 0 && ien))
    throw new NvmeStatus(Status.INVALID_INTERRUPT_VECTOR, `vector ${iv}`);
  if (((c.cc >> 20) & 0xf) !== 4) throw new NvmeStatus(Status.INVALID_FIELD, "CC.IOCQES is not 4");
  c.cqs.set(qid, new CompletionQueue(c.dma, qid, base, size, iv, ien));
  return { status: Status.SUCCESS };
}

async function createSq(c: NvmeController, sqe: Uint8Array): Promise<CommandResult> {
  const dw10 = u32(sqe, Sqe.CDW10);
  const dw11 = u32(sqe, Sqe.CDW11);
  const qid = dw10 & 0xffff;
  const size = (dw10 >>> 16) + 1;
  const pc = (dw11 & 1) !== 0;
  const cqid = dw11 >>> 16;
  const base = u64(sqe, Sqe.PRP1);
  if (qid === 0 || qid > c.opts.maxIoQueues || c.sqs.has(qid))
    throw new NvmeStatus(Status.INVALID_QUEUE_ID, `SQ ${qid}`);
  if (size < 2 || size > c.opts.maxQueueEntries) throw new NvmeStatus(Status.INVALID_QUEUE_SIZE, `${size}`);
  if (cqid === 0 || !c.cqs.has(cqid)) throw new NvmeStatus(Status.CQ_INVALID, `CQ ${cqid}`);
  if (!pc) throw new NvmeStatus(Status.INVALID_FIELD, "CAP.CQR: queues must be physically contiguous");
  if (base & 0xfffn) throw new NvmeStatus(Status.INVALID_PRP_OFFSET, "SQ base is not page-aligned");
  if (((c.cc >> 16) & 0xf) !== 6) throw new NvmeStatus(Status.INVALID_FIELD, "CC.IOSQES is not 6");
  const sq = new SubmissionQueue(c.dma, qid, base, size, cqid);
  c.sqs.set(qid, sq);
  c.cqs.get(cqid)!.sqs.add(qid);
  return { status: Status.SUCCESS };
}

async function deleteSq(c: NvmeController, sqe: Uint8Array): Promise<CommandResult> {
  const qid = u32(sqe, Sqe.CDW10) & 0xffff;
  const sq = c.sqs.get(qid);
  if (qid === 0 || !sq) throw new NvmeStatus(Status.INVALID_QUEUE_ID, `SQ ${qid}`);
  // Commands already fetched complete first (to the CQ, before this deletion completes).
  c.sqs.delete(qid);
  await Promise.allSettled([...sq.inflight]);
  sq.deleted = true;
  sq.ring.release();
  c.cqs.get(sq.cqid)?.sqs.delete(qid);
  return { status: Status.SUCCESS };
}

async function deleteCq(c: NvmeController, sqe: Uint8Array): Promise<CommandResult> {
  const qid = u32(sqe, Sqe.CDW10) & 0xffff;
  const cq = c.cqs.get(qid);
  if (qid === 0 || !cq) throw new NvmeStatus(Status.INVALID_QUEUE_ID, `CQ ${qid}`);
  if (cq.sqs.size > 0) throw new NvmeStatus(Status.INVALID_QUEUE_DELETION, `CQ ${qid} still has SQs`);
  c.cqs.delete(qid);
  cq.ring.release();
  if (cq.ien) c.irqs.lower(cq.iv);
  return { status: Status.SUCCESS };
}

function featureValue(c: NvmeController, fid: number, dw11: number, sel: number): number {
  const f = c.features;
  switch (fid) {
    case Feature.ARBITRATION:
      return f.arbitration;
    case Feature.POWER_MANAGEMENT:
      return f.powerState;
    case Feature.TEMPERATURE_THRESHOLD:
      return f.temperatureThreshold;
    case Feature.ERROR_RECOVERY:
      return f.errorRecovery;
    case Feature.VOLATILE_WRITE_CACHE:
      return f.volatileWriteCache ? 1 : 0;
    case Feature.NUMBER_OF_QUEUES: {
      const n = c.opts.maxIoQueues - 1;
      return sel === 0 && f.queuesGranted !== null ? f.queuesGranted : (n | (n << 16)) >>> 0;
    }
    case Feature.INTERRUPT_COALESCING:
      return f.coalescing;
    case Feature.INTERRUPT_VECTOR_CONFIG: {
      const iv = dw11 & 0xffff;
      if (iv >= c.opts.vectors) throw new NvmeStatus(Status.INVALID_FIELD, `vector ${iv}`);
      return f.vectorConfig.get(iv) ?? iv;
    }
    case Feature.WRITE_ATOMICITY:
      return 0;
    case Feature.ASYNC_EVENT_CONFIG:
      return f.asyncEventConfig;
    default:
      throw new NvmeStatus(Status.INVALID_FIELD, `feature 0x${fid.toString(16)}`);
  }
}

async function getFeatures(c: NvmeController, sqe: Uint8Array): Promise<CommandResult> {
  const dw10 = u32(sqe, Sqe.CDW10);
  const fid = dw10 & 0xff;
  const sel = (dw10 >> 8) & 7;
  if (sel === 3) {
    featureValue(c, fid, u32(sqe, Sqe.CDW11), 0); // unknown fid: invalid field
    return { status: Status.SUCCESS, dw0: 0x4 }; // changeable, not saveable, not per namespace
  }
  if (sel > 3) throw new NvmeStatus(Status.INVALID_FIELD, `SEL ${sel}`);
  // Nothing is saveable: current, default and saved values are the current ones (SEL 1/2 are
  // only different for Number of Queues, which reports what the controller offers).
  return { status: Status.SUCCESS, dw0: featureValue(c, fid, u32(sqe, Sqe.CDW11), sel) };
}

async function setFeatures(c: NvmeController, sqe: Uint8Array): Promise<CommandResult> {
  const dw10 = u32(sqe, Sqe.CDW10);
  const dw11 = u32(sqe, Sqe.CDW11);
  const fid = dw10 & 0xff;
  if (dw10 & 0x8000_0000) throw new NvmeStatus(Status.FEATURE_NOT_SAVEABLE, `feature ${fid}`);
  const f = c.features;
  switch (fid) {
    case Feature.ARBITRATION:
      f.arbitration = dw11 >>> 0;
      return { status: Status.SUCCESS };
    case Feature.POWER_MANAGEMENT:
      if ((dw11 & 0x1f) !== 0) throw new NvmeStatus(Status.INVALID_FIELD, `power state ${dw11 & 0x1f}`);
      f.powerState = dw11 & 0xff;
      return { status: Status.SUCCESS };
    case Feature.TEMPERATURE_THRESHOLD:
      f.temperatureThreshold = dw11 & 0xffff;
      return { status: Status.SUCCESS };
    case Feature.ERROR_RECOVERY:
      f.errorRecovery = dw11 & 0xffff;
      return { status: Status.SUCCESS };
    case Feature.VOLATILE_WRITE_CACHE:
      if (!(dw11 & 1) && f.volatileWriteCache) await c.ns.flush();
      f.volatileWriteCache = (dw11 & 1) !== 0;
      return { status: Status.SUCCESS };
    case Feature.NUMBER_OF_QUEUES: {
      const nsqr = dw11 & 0xffff;
      const ncqr = dw11 >>> 16;
      if (nsqr === 0xffff || ncqr === 0xffff) throw new NvmeStatus(Status.INVALID_FIELD, "65536 queues");
      if (c.sqs.size > 1 || c.cqs.size > 1)
        throw new NvmeStatus(Status.COMMAND_SEQUENCE_ERROR, "I/O queues exist already");
      const max = c.opts.maxIoQueues - 1;
      f.queuesGranted = (Math.min(nsqr, max) | (Math.min(ncqr, max) << 16)) >>> 0;
      return { status: Status.SUCCESS, dw0: f.queuesGranted };
    }
    case Feature.INTERRUPT_COALESCING:
      f.coalescing = dw11 & 0xffff;
      return { status: Status.SUCCESS };
    case Feature.INTERRUPT_VECTOR_CONFIG: {
      const iv = dw11 & 0xffff;
      if (iv >= c.opts.vectors) throw new NvmeStatus(Status.INVALID_FIELD, `vector ${iv}`);
      f.vectorConfig.set(iv, dw11 & 0x1ffff);
      return { status: Status.SUCCESS };
    }
    case Feature.WRITE_ATOMICITY:
      return { status: Status.SUCCESS };
    case Feature.ASYNC_EVENT_CONFIG:
      f.asyncEventConfig = dw11 >>> 0;
      return { status: Status.SUCCESS };
    default:
      throw new NvmeStatus(Status.INVALID_FIELD, `feature 0x${fid.toString(16)}`);
  }
}

async function getLogPage(c: NvmeController, sqe: Uint8Array): Promise<CommandResult> {
  const dw10 = u32(sqe, Sqe.CDW10);
  const lid = dw10 & 0xff;
  const numd = ((dw10 >>> 16) | ((u32(sqe, Sqe.CDW11) & 0xffff) << 16)) + 1;
  const offset = Number(u64(sqe, Sqe.CDW12));
  const length = numd * 4;
  if (offset & 3) throw new NvmeStatus(Status.INVALID_FIELD, "log page offset not dword-aligned");
  let page: Uint8Array;
  switch (lid) {
    case LogPage.ERROR:
      page = new Uint8Array(64);
      break;
    case LogPage.SMART: {
      page = new Uint8Array(512);
      const v = new DataView(page.buffer);
      const s = c.ns.stats;
      v.setUint16(1, 0x0137, true); // composite temperature 311 K
      page[3] = 100; // available spare
      page[4] = 10; // spare threshold
      // Data units are thousands of 512-byte units, rounded up.
      v.setBigUint64(32, BigInt(Math.ceil(s.bytesRead / 512_000)), true);
      v.setBigUint64(48, BigInt(Math.ceil(s.bytesWritten / 512_000)), true);
      v.setBigUint64(64, BigInt(s.readCommands), true);
      v.setBigUint64(80, BigInt(s.writeCommands), true);
      v.setBigUint64(112, 1n, true); // power cycles
      break;
    }
    case LogPage.FIRMWARE_SLOT:
      page = new Uint8Array(512);
      page[0] = 1; // AFI: slot 1 active
      ascii(page, 8, 8, FIRMWARE);
      break;
    default:
      throw new NvmeStatus(Status.INVALID_LOG_PAGE, `log page 0x${lid.toString(16)}`);
  }
  if (length > MAX_TRANSFER) throw new NvmeStatus(Status.INVALID_FIELD, "log page transfer over MDTS");
  if (offset >= page.length && offset !== 0) throw new NvmeStatus(Status.INVALID_FIELD, "log page offset");
  const out = new Uint8Array(length);
  out.set(page.subarray(offset, offset + length));
  await dataOut(c, sqe, out);
  return { status: Status.SUCCESS };
}
