// Interrupts of a device: a set of indices (INTx, MSI, MSI-X, ERR, REQ for PCI; interrupt lines
// for platform devices), each with `count` vectors. The client binds an eventfd per vector with
// DEVICE_SET_IRQS; the device raises vectors (edge) or drives levels (INTx), and this controller
// signals the bound eventfd — it is the only code that writes eventfds.
//
// Semantics (the full DEVICE_SET_IRQS matrix, data NONE/BOOL/EVENTFD × action MASK/UNMASK/TRIGGER):
// - TRIGGER+EVENTFD with n fds binds fd[i] to vector start+i (an old fd there is closed); with no
//   fds it unbinds the run (QEMU's "count 1, no fd" MSI-X enable is such a run). Either form
//   enables the index.
// - TRIGGER+NONE count 0 disables the whole index (every fd closed); count n fires the vectors
//   (loopback). TRIGGER+BOOL fires the vectors whose byte is 1.
// - MASK/UNMASK with NONE (the range) or BOOL (where 1): a masked edge vector latches `pending` and
//   fires when unmasked; a level vector fires on unmask if still asserted.
// - UNMASK+EVENTFD (one vector, one fd): a resample fd; when the client signals it the vector is
//   unmasked. MASK+EVENTFD likewise masks.
// - Level vectors (INTx) are AUTOMASKED: after firing they stay masked until unmasked.
//
// OWNERSHIP: fds passed to `setIrqs` move into the controller, which closes them on unbind,
// disable, `releaseAll()` (client gone) or when the call fails.
import { readlinkSync } from "node:fs";
import { native, PollEvent, type PollerInstance } from "../../native/index.ts";
import { Errno, IrqInfoFlag, IrqSetFlag } from "../../protocol/index.ts";
import { VfuError } from "../util/errors.ts";
import { closeFds } from "../util/fds.ts";
import type { Logger } from "../util/log.ts";

export type IrqKind = "edge" | "level";

export interface IrqSpec {
  index: number;
  name: string;
  count: number;
  kind?: IrqKind;
  /** MASK/UNMASK allowed (reported as MASKABLE). Level indices are always maskable. */
  maskable?: boolean;
  /** Only TRIGGER actions, at most one vector per call (PCI ERR and REQ). */
  triggerOnly?: boolean;
}

export interface VectorCounters {
  /** eventfd signals written */
  signalled: number;
  /** raised while masked (latched as pending) */
  latched: number;
  /** raised with no eventfd bound: lost */
  dropped: number;
}

interface Vector extends VectorCounters {
  fd: number;
  masked: boolean;
  pending: boolean;
  asserted: boolean;
  unmaskFd: number;
  unmaskPoller: PollerInstance | null;
  maskFd: number;
  maskPoller: PollerInstance | null;
}

interface IrqIndexState {
  spec: IrqSpec;
  enabled: boolean;
  vectors: Vector[];
}

export interface SetIrqsRequest {
  flags: number;
  index: number;
  start: number;
  count: number;
  data: Uint8Array | null;
}

function newVector(): Vector {
  return {
    fd: -1,
    masked: false,
    pending: false,
    asserted: false,
    unmaskFd: -1,
    unmaskPoller: null,
    maskFd: -1,
    maskPoller: null,
    signalled: 0,
    latched: 0,
    dropped: 0,
  };
}

export class IrqController {
  readonly #indices: IrqIndexState[] = [];
  readonly #log: Logger;
  /** Observers of every eventfd signal (tests, the CLI's verbose log). */
  onSignal: ((index: number, vector: number) => void) | null = null;

  constructor(specs: readonly IrqSpec[], log: Logger) {
    this.#log = log;
    for (const spec of specs) {
      if (this.#indices[spec.index]) throw new Error(`interrupt index ${spec.index} declared twice`);
      this.#indices[spec.index] = {
        spec,
        enabled: false,
        vectors: Array.from({ length: spec.count }, newVector),
      };
    }
    for (let i = 0; i < this.#indices.length; i++) {
      if (!this.#indices[i]) {
        this.#indices[i] = { spec: { index: i, name: `unused-${i}`, count: 0 }, enabled: false, vectors: [] };
      }
    }
  }

  get numIrqs(): number {
    return this.#indices.length;
  }

  /** DEVICE_GET_IRQ_INFO for one index. */
  info(index: number): { flags: number; count: number } {
    const st = this.#state(index);
    const level = st.spec.kind === "level";
    let flags = IrqInfoFlag.EVENTFD;
    if (level || st.spec.maskable) flags |= IrqInfoFlag.MASKABLE;
    if (level) flags |= IrqInfoFlag.AUTOMASKED;
    return { flags, count: st.spec.count };
  }

  counters(
    index: number,
    vector: number,
  ): VectorCounters & { masked: boolean; pending: boolean; bound: boolean } {
    const v = this.#vector(index, vector);
    return {
      signalled: v.signalled,
      latched: v.latched,
      dropped: v.dropped,
      masked: v.masked,
      pending: v.pending,
      bound: v.fd >= 0,
    };
  }

  isEnabled(index: number): boolean {
    return this.#state(index).enabled;
  }

  /** Raise an edge vector (MSI, MSI-X, a platform edge line, ERR). */
  raise(index: number, vector = 0): void {
    const v = this.#vector(index, vector);
    if (v.masked) {
      v.pending = true;
      v.latched++;
      return;
    }
    this.#signal(index, vector, v);
  }

  /** Drive a level vector (INTx). Asserting fires it unless masked; it then stays masked (automask)
   * until unmasked, when it fires again if still asserted. */
  setLevel(index: number, vector: number, asserted: boolean): void {
    const v = this.#vector(index, vector);
    const wasAsserted = v.asserted;
    v.asserted = asserted;
    if (asserted && !wasAsserted) this.#fireLevel(index, vector, v);
  }

  isAsserted(index: number, vector = 0): boolean {
    return this.#vector(index, vector).asserted;
  }

  /** Apply one DEVICE_SET_IRQS. OWNERSHIP: `fds` move in (closed here on any failure). */
  setIrqs(req: SetIrqsRequest, fds: number[]): void {
    try {
      this.#setIrqs(req, fds);
    } catch (err) {
      closeFds(fds);
      throw err;
    }
  }

  #setIrqs(req: SetIrqsRequest, fds: number[]): void {
    const { flags, index, start, count } = req;
    if (index >= this.#indices.length) {
      throw new VfuError(
        Errno.EINVAL,
        `interrupt index ${index} does not exist (the device has ${this.#indices.length})`,
      );
    }
    const st = this.#indices[index]!;
    const data = flags & IrqSetFlag.DATA_TYPE_MASK;
    const action = flags & IrqSetFlag.ACTION_TYPE_MASK;
    if (fds.length > 0 && data !== IrqSetFlag.DATA_EVENTFD) {
      throw new VfuError(Errno.EINVAL, "fds were sent without DATA_EVENTFD");
    }
    if (count === 0) {
      if (action !== IrqSetFlag.ACTION_TRIGGER || data !== IrqSetFlag.DATA_NONE || start !== 0) {
        throw new VfuError(Errno.EINVAL, "count 0 is only valid as TRIGGER|NONE with start 0 (disable)");
      }
      this.#disable(st);
      return;
    }
    if (start + count > st.spec.count) {
      throw new VfuError(
        Errno.EINVAL,
        `vectors [${start}, ${start + count}) exceed index ${index} (${st.spec.name}) with ${st.spec.count}`,
      );
    }
    if (st.spec.triggerOnly && (action !== IrqSetFlag.ACTION_TRIGGER || count > 1)) {
      throw new VfuError(Errno.EINVAL, `index ${index} (${st.spec.name}) takes only TRIGGER of one vector`);
    }
    if (data === IrqSetFlag.DATA_EVENTFD && fds.length !== 0 && fds.length !== count) {
      throw new VfuError(Errno.EINVAL, `${fds.length} fds sent for ${count} vectors`);
    }
    if (data === IrqSetFlag.DATA_BOOL && (!req.data || req.data.length !== count)) {
      throw new VfuError(Errno.EINVAL, "DATA_BOOL needs one byte per vector");
    }
    const maskable = st.spec.kind === "level" || st.spec.maskable === true;
    if (action !== IrqSetFlag.ACTION_TRIGGER && !maskable) {
      throw new VfuError(Errno.EINVAL, `index ${index} (${st.spec.name}) is not maskable`);
    }
    const selected = (i: number): boolean => data !== IrqSetFlag.DATA_BOOL || req.data![i] === 1;

    if (action === IrqSetFlag.ACTION_TRIGGER) {
      if (data === IrqSetFlag.DATA_EVENTFD) {
        for (const fd of fds) this.#requireEventfd(fd);
        st.enabled = true;
        for (let i = 0; i < count; i++) {
          const v = st.vectors[start + i]!;
          if (v.fd >= 0) closeFds([v.fd]);
          v.fd = fds.length > 0 ? fds[i]! : -1;
        }
        fds.length = 0; // moved
        // A level vector that is asserted and unmasked fires as soon as it has an fd.
        if (st.spec.kind === "level") {
          for (let i = 0; i < count; i++) {
            const v = st.vectors[start + i]!;
            if (v.asserted && !v.masked && v.fd >= 0) this.#fireLevel(index, start + i, v);
          }
        }
        return;
      }
      for (let i = 0; i < count; i++) {
        if (!selected(i)) continue;
        if (st.spec.kind === "level") this.#fireLevel(index, start + i, st.vectors[start + i]!, true);
        else this.raise(index, start + i);
      }
      return;
    }

    const mask = action === IrqSetFlag.ACTION_MASK;
    if (data === IrqSetFlag.DATA_EVENTFD) {
      if (count !== 1 || fds.length !== 1) {
        throw new VfuError(
          Errno.EINVAL,
          `${mask ? "MASK" : "UNMASK"} with an eventfd takes one vector and one fd`,
        );
      }
      this.#requireEventfd(fds[0]!);
      this.#watchFd(index, start, st.vectors[start]!, fds[0]!, mask);
      fds.length = 0;
      return;
    }
    for (let i = 0; i < count; i++) {
      if (!selected(i)) continue;
      if (mask) st.vectors[start + i]!.masked = true;
      else this.#unmask(index, start + i);
    }
  }

  #requireEventfd(fd: number): void {
    // The kernel names an eventfd's inode "anon_inode:[eventfd]"; a file, socket or another
    // anonymous inode (timerfd, epoll) would never be signalled the way the client expects.
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      throw new VfuError(Errno.EINVAL, `fd ${fd} is not open`);
    }
    if (target !== "anon_inode:[eventfd]") {
      throw new VfuError(Errno.EINVAL, `an interrupt fd must be an eventfd, not ${target}`);
    }
  }

  #watchFd(index: number, vector: number, v: Vector, fd: number, mask: boolean): void {
    this.#releaseWatch(v, mask);
    const poller = new native.Poller(fd, (status) => {
      if (status < 0) return;
      let value: number | null = null;
      try {
        value = native.eventfdRead(fd);
      } catch {
        value = null;
      }
      if (value === null) return;
      if (mask) v.masked = true;
      else this.#unmask(index, vector);
    });
    poller.start(PollEvent.READABLE);
    if (mask) {
      v.maskFd = fd;
      v.maskPoller = poller;
    } else {
      v.unmaskFd = fd;
      v.unmaskPoller = poller;
    }
  }

  #releaseWatch(v: Vector, mask: boolean): void {
    if (mask) {
      v.maskPoller?.close();
      if (v.maskFd >= 0) closeFds([v.maskFd]);
      v.maskPoller = null;
      v.maskFd = -1;
    } else {
      v.unmaskPoller?.close();
      if (v.unmaskFd >= 0) closeFds([v.unmaskFd]);
      v.unmaskPoller = null;
      v.unmaskFd = -1;
    }
  }

  #unmask(index: number, vector: number): void {
    const st = this.#indices[index]!;
    const v = st.vectors[vector]!;
    v.masked = false;
    if (st.spec.kind === "level") {
      if (v.asserted) this.#fireLevel(index, vector, v);
      return;
    }
    if (v.pending) {
      v.pending = false;
      this.#signal(index, vector, v);
    }
  }

  #fireLevel(index: number, vector: number, v: Vector, loopback = false): void {
    if (v.masked && !loopback) return;
    if (v.fd < 0) {
      v.dropped++;
      return;
    }
    this.#signal(index, vector, v);
    v.masked = true; // AUTOMASKED until the client unmasks
  }

  #signal(index: number, vector: number, v: Vector): void {
    if (v.fd < 0) {
      v.dropped++;
      return;
    }
    try {
      native.eventfdWrite(v.fd, 1);
      v.signalled++;
      this.onSignal?.(index, vector);
    } catch (err) {
      this.#log.warn(`interrupt ${index}/${vector}: eventfd write failed: ${(err as Error).message}`);
      v.dropped++;
    }
  }

  #disable(st: IrqIndexState): void {
    st.enabled = false;
    for (const v of st.vectors) {
      if (v.fd >= 0) closeFds([v.fd]);
      v.fd = -1;
      v.pending = false;
      v.masked = false;
      this.#releaseWatch(v, true);
      this.#releaseWatch(v, false);
    }
  }

  #state(index: number): IrqIndexState {
    const st = this.#indices[index];
    if (!st) throw new VfuError(Errno.EINVAL, `interrupt index ${index} does not exist`);
    return st;
  }

  #vector(index: number, vector: number): Vector {
    const v = this.#state(index).vectors[vector];
    if (!v) throw new RangeError(`interrupt ${index} has no vector ${vector}`);
    return v;
  }

  /** Device reset: masks and pending bits clear, levels drop; bound fds stay (the client re-sends
   * SET_IRQS as it needs). */
  reset(): void {
    for (const st of this.#indices) {
      for (const v of st.vectors) {
        v.masked = false;
        v.pending = false;
        v.asserted = false;
      }
    }
  }

  /** The client is gone: close every fd it gave us and forget all bindings. */
  releaseAll(): void {
    for (const st of this.#indices) this.#disable(st);
    this.reset();
  }

  /** Every fd the controller holds (for leak checks). */
  heldFds(): number[] {
    const out: number[] = [];
    for (const st of this.#indices) {
      for (const v of st.vectors) {
        for (const fd of [v.fd, v.maskFd, v.unmaskFd]) if (fd >= 0) out.push(fd);
      }
    }
    return out;
  }
}
