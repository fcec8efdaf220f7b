// Scatter-gather lists of guest data pages kept across commands. A 128 KiB transfer names 32
// pages through its PRP list, and taking a ctx.dma.sg list per page per command (translation,
// list and segment objects, a view, their release) measured about 60 µs of the ~90 µs of
// server CPU of such a command, most of it garbage afterwards. Guests reuse their I/O buffers,
// so the list of a 4 KiB page is taken once ("rw", either direction) and kept:
// - An unmap invalidates what it covers: the controller's onUnmap listener calls drop() with the
//   handles the unmap names, and a list found stale (its bytes emptied) is dropped and retaken.
// - Dirty tracking stays right: the IOMMU marks every live writable list's pages dirty whenever
//   the dirty bitmap is read.
// - Bus mastering and the address space are still checked once per command by the caller
//   (ctx.dma.mappable on the first piece): a kept list alone would not see Bus Master turned off.
// At most MAX_PAGES lists are kept (16 MiB of guest memory); beyond that the least recently
// used goes.
//
// OWNERSHIP: the lists are this object's; clear() releases them all.
import type { DmaApi, DmaSgList } from "../../src/index.ts";
import { PAGE_SIZE } from "./spec.ts";

export const MAX_PAGES = 4096;
const PAGE = BigInt(PAGE_SIZE);

export class PageLists {
  readonly #dma: DmaApi;
  readonly #lists = new Map<bigint, DmaSgList>();
  hits = 0;
  misses = 0;

  constructor(dma: DmaApi) {
    this.#dma = dma;
  }

  get size(): number {
    return this.#lists.size;
  }

  /** The bytes of [iova, iova + length) (inside one page), or null when the page is not
   * mappable for reading and writing (the caller then takes per-command lists). */
  bytes(iova: bigint, length: number): Uint8Array | null {
    const page = iova & ~(PAGE - 1n);
    const off = Number(iova - page);
    let l = this.#lists.get(page);
    let b = l?.segments.length === 1 ? l.segments[0]!.bytes : null;
    if (!l || !b || b.length !== PAGE_SIZE) {
      if (l) {
        this.#lists.delete(page);
        l.release();
      }
      this.misses++;
      try {
        l = this.#dma.sg(page, PAGE_SIZE, "rw");
      } catch {
        return null;
      }
      b = l.segments.length === 1 ? l.segments[0]!.bytes : null;
      if (!b || b.length !== PAGE_SIZE) {
        l.release();
        return null;
      }
      if (this.#lists.size >= MAX_PAGES) {
        const [oldest, ol] = this.#lists.entries().next().value as [bigint, DmaSgList];
        this.#lists.delete(oldest);
        ol.release();
      }
      this.#lists.set(page, l);
    } else {
      // Most recently used last, so eviction (the first entry) never takes a page of the
      // command being set up (at most 32 pages, far below MAX_PAGES).
      this.#lists.delete(page);
      this.#lists.set(page, l);
      this.hits++;
    }
    return off === 0 && length === PAGE_SIZE ? b : b.subarray(off, off + length);
  }

  /** Forget (and release) the lists among `handles` (an unmap is about to invalidate them). */
  drop(handles: readonly unknown[]): void {
    if (this.#lists.size === 0) return;
    const gone = new Set(handles);
    for (const [page, l] of this.#lists) {
      if (gone.has(l)) {
        this.#lists.delete(page);
        l.release();
      }
    }
  }

  clear(): void {
    for (const l of this.#lists.values()) l.release();
    this.#lists.clear();
  }
}
