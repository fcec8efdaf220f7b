// NVM command set I/O commands on namespace 1: Read, Write, Flush, Write Zeroes, Dataset
// Management. Data pointers are PRPs or SGLs (prp-sgl.ts); a DMA fault while moving data ends the
// command with Data Transfer Error (the file is written only after all data was read from the
// guest, so a faulting Write changes nothing). When the guest pages are fd-backed (mapped), the
// file is read straight into them and written straight from them (readv/writev on the segments
// of ctx.dma.sg lists): synchronously on the event loop when the namespace allows it (up to
// SYNC_IO_MAX_BYTES, within its pass budget and back-off: namespace.ts), else on the libuv pool;
// message-backed memory goes through copies.

import type { DmaSgList } from "../../src/index.ts";
import { MAX_TRANSFER } from "./admin.ts";
import type { CommandResult, NvmeController } from "./controller.ts";
import { type DataPiece, gather, prpPieces, scatter, sglPieces } from "./prp-sgl.ts";
import { IoOp, NvmeStatus, PAGE_SIZE, Sqe, Status } from "./spec.ts";

const PAGE_MASK = BigInt(PAGE_SIZE - 1);

const NSID_ALL = 0xffff_ffff;
const KNOWN = new Set<number>([IoOp.FLUSH, IoOp.WRITE, IoOp.READ, IoOp.WRITE_ZEROES, IoOp.DSM]);

function dv(sqe: Uint8Array): DataView {
  return new DataView(sqe.buffer, sqe.byteOffset, sqe.byteLength);
}

/** The pieces of guest memory the command's data pointer names, for `length` bytes. */
export function dataPieces(c: NvmeController, sqe: Uint8Array, length: number): Promise<DataPiece[]> {
  const psdt = (sqe[Sqe.FLAGS]! >> 6) & 3;
  const read = (iova: bigint, n: number) => c.dma.read(iova, n);
  if (psdt === 0) {
    const v = dv(sqe);
    return prpPieces(v.getBigUint64(Sqe.PRP1, true), v.getBigUint64(Sqe.PRP2, true), length, read);
  }
  if (psdt === 3) throw new NvmeStatus(Status.INVALID_FIELD, "PSDT 11b");
  return sglPieces(sqe.subarray(Sqe.PRP1, Sqe.PRP1 + 16), length, read);
}

export async function handleIo(c: NvmeController, sqe: Uint8Array): Promise<CommandResult> {
  const v = dv(sqe);
  const opc = sqe[Sqe.OPC]!;
  const nsid = v.getUint32(Sqe.NSID, true);
  if (!KNOWN.has(opc)) throw new NvmeStatus(Status.INVALID_OPCODE, `I/O opcode 0x${opc.toString(16)}`);
  if (opc === IoOp.FLUSH) {
    if (nsid !== 1 && nsid !== NSID_ALL) throw new NvmeStatus(Status.INVALID_NAMESPACE, `namespace ${nsid}`);
    await c.ns.flush();
    return { status: Status.SUCCESS };
  }
  if (nsid !== 1) throw new NvmeStatus(Status.INVALID_NAMESPACE, `namespace ${nsid}`);
  if (opc === IoOp.DSM) return dsm(c, sqe);
  const slba = v.getBigUint64(Sqe.CDW10, true);
  const dw12 = v.getUint32(Sqe.CDW12, true);
  const nlb = (dw12 & 0xffff) + 1;
  if (!c.ns.inRange(slba, nlb)) throw new NvmeStatus(Status.LBA_OUT_OF_RANGE, `${slba}+${nlb}`);
  if (opc === IoOp.WRITE_ZEROES) {
    await c.ns.writeZeroes(slba, nlb);
    return { status: Status.SUCCESS };
  }
  const length = nlb * c.ns.lbaSize;
  if (length > MAX_TRANSFER) throw new NvmeStatus(Status.INVALID_FIELD, `${length} bytes is over MDTS`);
  const pieces = await dataPieces(c, sqe, length);
  const fua = (dw12 & 0x4000_0000) !== 0;
  const bufs = keptBuffers(c, pieces);
  if (bufs && c.ns.syncAllowed(length, opc === IoOp.WRITE)) {
    // Zero-copy on the event loop, through the kept page lists: no list is taken per command.
    c.ns.transferSync(opc === IoOp.WRITE, slba, bufs, length);
    if (opc === IoOp.WRITE && (fua || !c.features.volatileWriteCache)) await c.ns.flush();
    return { status: Status.SUCCESS };
  }
  const lists = mapPieces(c, pieces, opc === IoOp.READ ? "write" : "read");
  if (lists) {
    // Zero-copy: the file is read into / written from the mapped guest pages themselves.
    const bufs: Uint8Array[] = [];
    for (const l of lists) for (const seg of l.segments) bufs.push(seg.bytes!);
    if (c.ns.syncAllowed(length, opc === IoOp.WRITE)) {
      // On the event loop (no pool round trip): nothing can unmap the pages meanwhile.
      try {
        c.ns.transferSync(opc === IoOp.WRITE, slba, bufs, length);
      } finally {
        for (const l of lists) l.release();
      }
      if (opc === IoOp.WRITE && (fua || !c.features.volatileWriteCache)) await c.ns.flush();
      return { status: Status.SUCCESS };
    }
    await c.transfer(
      lists,
      opc === IoOp.READ ? c.ns.readv(slba, bufs, length) : c.ns.writev(slba, bufs, length),
    );
    if (opc === IoOp.WRITE && (fua || !c.features.volatileWriteCache)) await c.ns.flush();
    return { status: Status.SUCCESS };
  }
  if (opc === IoOp.READ) {
    const data = new Uint8Array(length);
    await c.ns.read(slba, data);
    await scatter(c.dma, pieces, data);
  } else {
    const data = await gather(c.dma, pieces, length);
    await c.ns.write(slba, data);
    if (fua || !c.features.volatileWriteCache) await c.ns.flush();
  }
  return { status: Status.SUCCESS };
}

/** The pieces' bytes through the controller's kept page lists (page-lists.ts), or null when a
 * piece cannot be had that way (the per-command lists or the copy path then move the data, and
 * report any fault). Bus mastering and the address space are checked here, once per command. */
function keptBuffers(c: NvmeController, pieces: DataPiece[]): Uint8Array[] | null {
  if (pieces.length === 0 || !c.dma.mappable(pieces[0]!.iova, 1)) return null;
  const bufs: Uint8Array[] = [];
  for (const p of pieces) {
    let iova = p.iova;
    let left = p.length;
    while (left > 0) {
      const n = Math.min(left, PAGE_SIZE - Number(iova & PAGE_MASK));
      const b = c.pages.bytes(iova, n);
      if (!b) return null;
      bufs.push(b);
      iova += BigInt(n);
      left -= n;
    }
  }
  return bufs;
}

/** Scatter-gather lists over the pieces when every segment is mapped (fd-backed memory), else
 * null (the copy path then moves the data, and reports any fault). */
function mapPieces(c: NvmeController, pieces: DataPiece[], access: "read" | "write"): DmaSgList[] | null {
  const lists: DmaSgList[] = [];
  try {
    for (const p of pieces) {
      const l = c.dma.sg(p.iova, p.length, access);
      lists.push(l);
      for (const seg of l.segments) if (seg.bytes === null || seg.bytes.length !== seg.length) throw null;
    }
    return lists;
  } catch {
    for (const l of lists) l.release();
    return null;
  }
}

/** Dataset Management: with AD (deallocate), the ranges read as zeros afterwards. */
async function dsm(c: NvmeController, sqe: Uint8Array): Promise<CommandResult> {
  const v = dv(sqe);
  const nr = (v.getUint32(Sqe.CDW10, true) & 0xff) + 1;
  const deallocate = (v.getUint32(Sqe.CDW11, true) & 4) !== 0;
  const pieces = await dataPieces(c, sqe, nr * 16);
  const ranges = await gather(c.dma, pieces, nr * 16);
  const r = dv(ranges);
  const list: Array<{ slba: bigint; nlb: number }> = [];
  for (let i = 0; i < nr; i++) {
    const nlb = r.getUint32(i * 16 + 4, true);
    const slba = r.getBigUint64(i * 16 + 8, true);
    if (!c.ns.inRange(slba, nlb)) throw new NvmeStatus(Status.LBA_OUT_OF_RANGE, `range ${i}: ${slba}+${nlb}`);
    list.push({ slba, nlb });
  }
  if (deallocate) for (const x of list) if (x.nlb > 0) await c.ns.writeZeroes(x.slba, x.nlb);
  return { status: Status.SUCCESS };
}
