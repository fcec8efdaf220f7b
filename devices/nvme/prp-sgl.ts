// Data pointers: turn a command's DPTR into the list of guest memory pieces ({iova, length}) the
// transfer goes through, reading PRP lists and SGL segments from guest memory with ctx.dma.
//
// PRPs (PSDT 00, memory page size 4 KiB): PRP1 may start anywhere dword-aligned in a page and
// covers the rest of that page. If the transfer needs one more page, PRP2 points at it (offset 0);
// if it needs more, PRP2 points at a PRP list (dword-aligned; the list runs to the end of its
// page, and the last entry of a full list page points at the next list page).
// SGLs (PSDT 01 or 10, I/O commands only): SGL1 in the command is a Data Block, a Segment or a
// Last Segment descriptor; a segment is an array of 16-byte descriptors in which only the last
// may be a (Last) Segment descriptor, and a Last Segment holds data descriptors only. The data
// descriptors must add up to exactly the transfer length (SGLS does not offer longer SGLs).
// A malformed pointer throws NvmeStatus with the status the specification names; a fault
// reading a list throws the DmaFault (the caller turns it into Data Transfer Error).
import { NvmeStatus, PAGE_SIZE, Status } from "./spec.ts";

export interface DataPiece {
  iova: bigint;
  length: number;
}

export type ReadGuest = (iova: bigint, length: number) => Promise<Uint8Array>;

const PAGE = BigInt(PAGE_SIZE);
const PAGE_MASK = PAGE - 1n;
/** Cap on SGL segments per command: a loop of segments pointing at each other ends here. */
const MAX_SGL_SEGMENTS = 256;

function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Append, merging with the previous piece when contiguous. */
function push(out: DataPiece[], iova: bigint, length: number): void {
  const last = out[out.length - 1];
  if (last && last.iova + BigInt(last.length) === iova) last.length += length;
  else out.push({ iova, length });
}

export async function prpPieces(
  prp1: bigint,
  prp2: bigint,
  length: number,
  read: ReadGuest,
): Promise<DataPiece[]> {
  const out: DataPiece[] = [];
  if (length === 0) return out;
  if (prp1 & 3n) throw new NvmeStatus(Status.INVALID_PRP_OFFSET, "PRP1 is not dword-aligned");
  const first = Math.min(length, Number(PAGE - (prp1 & PAGE_MASK)));
  push(out, prp1, first);
  let left = length - first;
  if (left === 0) return out;
  if (left <= PAGE_SIZE) {
    if (prp2 & PAGE_MASK) throw new NvmeStatus(Status.INVALID_PRP_OFFSET, "PRP2 (a page) has an offset");
    push(out, prp2, left);
    return out;
  }
  if (prp2 & 3n) throw new NvmeStatus(Status.INVALID_PRP_OFFSET, "the PRP list is not dword-aligned");
  let list = prp2;
  while (left > 0) {
    const slots = Number((PAGE - (list & PAGE_MASK)) / 8n);
    const needed = Math.ceil(left / PAGE_SIZE);
    // A full list page whose entries do not cover the rest chains through its last entry.
    const chained = needed > slots;
    const count = chained ? slots : needed;
    const entries = dv(await read(list, count * 8));
    const data = chained ? count - 1 : count;
    for (let i = 0; i < data; i++) {
      const e = entries.getBigUint64(i * 8, true);
      if (e & PAGE_MASK) throw new NvmeStatus(Status.INVALID_PRP_OFFSET, "a PRP list entry has an offset");
      const n = Math.min(left, PAGE_SIZE);
      push(out, e, n);
      left -= n;
    }
    if (chained) {
      list = entries.getBigUint64((count - 1) * 8, true);
      if (list & PAGE_MASK)
        throw new NvmeStatus(Status.INVALID_PRP_OFFSET, "a chained PRP list has an offset");
    }
  }
  return out;
}

const SglType = { DATA_BLOCK: 0, BIT_BUCKET: 1, SEGMENT: 2, LAST_SEGMENT: 3 } as const;

interface SglDesc {
  addr: bigint;
  length: number;
  type: number;
  subtype: number;
}

function descAt(b: DataView, off: number): SglDesc {
  const id = b.getUint8(off + 15);
  return {
    addr: b.getBigUint64(off, true),
    length: b.getUint32(off + 8, true),
    type: id >> 4,
    subtype: id & 0xf,
  };
}

/** `sgl1` is the 16 bytes of DPTR. */
export async function sglPieces(sgl1: Uint8Array, length: number, read: ReadGuest): Promise<DataPiece[]> {
  const out: DataPiece[] = [];
  let total = 0;
  const data = (d: SglDesc): void => {
    if (d.subtype !== 0) throw new NvmeStatus(Status.SGL_DESCRIPTOR_TYPE_INVALID, `subtype ${d.subtype}`);
    if (d.length === 0) return;
    total += d.length;
    if (total > length)
      throw new NvmeStatus(Status.DATA_SGL_LENGTH_INVALID, "the SGL is longer than the data");
    push(out, d.addr, d.length);
  };
  let d = descAt(dv(sgl1), 0);
  let last = false;
  for (let segments = 0; ; segments++) {
    if (d.type === SglType.DATA_BLOCK) {
      data(d);
      break;
    }
    if (d.type !== SglType.SEGMENT && d.type !== SglType.LAST_SEGMENT)
      throw new NvmeStatus(Status.SGL_DESCRIPTOR_TYPE_INVALID, `descriptor type ${d.type}`);
    if (last) throw new NvmeStatus(Status.INVALID_SGL_SEGMENT_DESCRIPTOR, "a segment after the last segment");
    if (d.subtype !== 0) throw new NvmeStatus(Status.SGL_DESCRIPTOR_TYPE_INVALID, `subtype ${d.subtype}`);
    if (d.length === 0 || d.length % 16 !== 0)
      throw new NvmeStatus(Status.INVALID_SGL_SEGMENT_DESCRIPTOR, `segment length ${d.length}`);
    if (segments >= MAX_SGL_SEGMENTS)
      throw new NvmeStatus(Status.INVALID_SGL_DESCRIPTOR_COUNT, "too many SGL segments");
    last = d.type === SglType.LAST_SEGMENT;
    const seg = dv(await read(d.addr, d.length));
    const n = d.length / 16;
    let next: SglDesc | null = null;
    for (let i = 0; i < n; i++) {
      const e = descAt(seg, i * 16);
      if (e.type === SglType.DATA_BLOCK) data(e);
      else if ((e.type === SglType.SEGMENT || e.type === SglType.LAST_SEGMENT) && i === n - 1 && !last)
        next = e;
      else if (e.type === SglType.SEGMENT || e.type === SglType.LAST_SEGMENT)
        throw new NvmeStatus(Status.INVALID_SGL_SEGMENT_DESCRIPTOR, "a segment descriptor out of place");
      else throw new NvmeStatus(Status.SGL_DESCRIPTOR_TYPE_INVALID, `descriptor type ${e.type}`);
    }
    if (!next) break;
    d = next;
  }
  if (total !== length)
    throw new NvmeStatus(Status.DATA_SGL_LENGTH_INVALID, `SGL covers ${total} of ${length} bytes`);
  return out;
}

/** The DMA a transfer needs (a subset of ctx.dma). */
export interface TransferDma {
  read(iova: bigint, length: number): Promise<Uint8Array>;
  write(iova: bigint, data: Uint8Array): Promise<void>;
}

/** Copy the pieces out of guest memory into one buffer. Rejects with the DmaFault. */
export async function gather(
  dma: TransferDma,
  pieces: readonly DataPiece[],
  length: number,
): Promise<Uint8Array> {
  if (pieces.length === 1) return dma.read(pieces[0]!.iova, length);
  const out = new Uint8Array(length);
  const parts = await Promise.all(pieces.map((p) => dma.read(p.iova, p.length)));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Copy `data` over the pieces in guest memory. Rejects with the DmaFault. */
export async function scatter(
  dma: TransferDma,
  pieces: readonly DataPiece[],
  data: Uint8Array,
): Promise<void> {
  let at = 0;
  const writes: Promise<void>[] = [];
  for (const p of pieces) {
    writes.push(dma.write(p.iova, data.subarray(at, at + p.length)));
    at += p.length;
  }
  await Promise.all(writes);
}
