// Shadow doorbells (Doorbell Buffer Config): two guest pages, one holding the doorbells the host
// writes instead of ringing MMIO (SQ tails at slot 2·qid, CQ heads at 2·qid + 1, `stride` bytes
// apart) and one holding the event indices we publish (the host rings MMIO only once its index
// passes ours). Both are read and written through zero-copy views when guest memory is fd-backed
// (synchronously: the shadow is read at every pump pass, so a view saves a DMA request and its
// promise each time), else through DMA messages. A fault is the controller's to handle (`fatal`):
// a read then returns null.
import type { DmaApi, DmaView } from "../../src/index.ts";

export class ShadowDoorbells {
  readonly dbs: bigint;
  readonly eis: bigint;
  readonly #dma: DmaApi;
  readonly #stride: number;
  readonly #dbsView: DmaView | null;
  readonly #eisView: DmaView | null;
  readonly #fatal: (what: string, err: unknown) => void;

  /** Take the pages at `dbs` and `eis` (`bytes` each). Rejects with the DmaFault of a page the
   * device may not reach. */
  static async open(
    dma: DmaApi,
    dbs: bigint,
    eis: bigint,
    bytes: number,
    stride: number,
    fatal: (what: string, err: unknown) => void,
  ): Promise<ShadowDoorbells> {
    await dma.read(dbs, bytes);
    await dma.read(eis, bytes);
    const view = (iova: bigint, access: "read" | "rw"): DmaView | null => {
      if (!dma.mappable(iova, bytes)) return null;
      try {
        return dma.view(iova, bytes, access);
      } catch {
        return null;
      }
    };
    return new ShadowDoorbells(dma, stride, dbs, eis, view(dbs, "read"), view(eis, "rw"), fatal);
  }

  private constructor(
    dma: DmaApi,
    stride: number,
    dbs: bigint,
    eis: bigint,
    dbsView: DmaView | null,
    eisView: DmaView | null,
    fatal: (what: string, err: unknown) => void,
  ) {
    this.#dma = dma;
    this.#stride = stride;
    this.dbs = dbs;
    this.eis = eis;
    this.#dbsView = dbsView;
    this.#eisView = eisView;
    this.#fatal = fatal;
  }

  /** A shadow doorbell (tail or head): synchronous through the page's view when it is mapped,
   * else a DMA read; null after a fault. */
  read(slot: number): number | null | Promise<number | null> {
    const off = slot * this.#stride;
    const view = this.#dbsView?.bytes;
    if (view && view.length >= off + 4)
      return (view[off]! | (view[off + 1]! << 8) | (view[off + 2]! << 16) | (view[off + 3]! << 24)) >>> 0;
    return this.#dma.read(this.dbs + BigInt(off), 4).then(
      (d) => new DataView(d.buffer, d.byteOffset, 4).getUint32(0, true),
      (err) => {
        this.#fatal("reading the shadow doorbell", err);
        return null;
      },
    );
  }

  /** Publish an event index: synchronous through the view when mapped, else a DMA write. */
  write(slot: number, value: number): void | Promise<void> {
    const off = slot * this.#stride;
    const view = this.#eisView?.bytes;
    if (view && view.length >= off + 4) {
      view[off] = value & 0xff;
      view[off + 1] = (value >> 8) & 0xff;
      view[off + 2] = (value >> 16) & 0xff;
      view[off + 3] = (value >>> 24) & 0xff;
      return;
    }
    const d = new Uint8Array(4);
    new DataView(d.buffer).setUint32(0, value, true);
    return this.#dma
      .write(this.eis + BigInt(off), d)
      .catch((err) => this.#fatal("writing the event index", err));
  }

  release(): void {
    this.#dbsView?.release();
    this.#eisView?.release();
  }
}
