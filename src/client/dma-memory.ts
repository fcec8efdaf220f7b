// The client's memory for the device's DMA. Memory mapped with an fd (`mapMemory`) is a memfd both
// sides map, so the device's DMA touches it with no message; memory mapped without one
// (`mapMessageMemory`) is reached by the server's DMA_READ/DMA_WRITE requests, which `serve`
// answers from the client's buffer as they arrive, interleaved with the client's own requests.
//
// OWNERSHIP: the memfds and their mappings are the client's: released by `dmaUnmap` of their range
// or by `releaseAll` when the client closes.

import { native } from "../../native/index.ts";
import {
  Command,
  type DmaLayout,
  DmaMapFlag,
  DmaUnmapFlag,
  decodeDmaRead,
  decodeDmaUnmapReply,
  decodeDmaWrite,
  Errno,
  encodeDmaMap,
  encodeDmaReadReply,
  encodeDmaUnmap,
  encodeDmaWriteReply,
  encodeErrorReply,
  encodeMessage,
  HeaderFlag,
} from "../../protocol/index.ts";
import type { ReceivedFrame } from "../transport/connection.ts";
import { closeFds } from "../util/fds.ts";
import type { ClientCore } from "./client-core.ts";

/** Client memory the server reaches with DMA. */
export interface ClientMemory {
  iova: bigint;
  size: number;
  /** The client's view of the bytes. */
  bytes: Uint8Array;
  /** The memfd the server maps, or -1 for message-backed memory. */
  fd: number;
}

export interface DmaMapRequest {
  iova: bigint;
  size: bigint;
  flags?: number;
  fd?: number;
  offset?: bigint;
}

const RW = DmaMapFlag.READ | DmaMapFlag.WRITE;

export class ClientDma {
  readonly #core: ClientCore;
  readonly #memories: ClientMemory[] = [];
  /** DMA requests from the server that we served, for tests and statistics. */
  readonly served = { reads: 0, writes: 0, errors: 0 };

  constructor(core: ClientCore) {
    this.#core = core;
  }

  async map(req: DmaMapRequest): Promise<void> {
    const body = encodeDmaMap({
      argsz: 32,
      flags: req.flags ?? RW,
      offset: req.offset ?? 0n,
      addr: req.iova,
      size: req.size,
    });
    await this.#core.request(Command.DMA_MAP, body, req.fd !== undefined && req.fd >= 0 ? [req.fd] : []);
  }

  async unmap(iova: bigint, size: bigint, flags = 0): Promise<void> {
    const r = await this.#core.request(
      Command.DMA_UNMAP,
      encodeDmaUnmap({ argsz: 24, flags, addr: iova, size }),
    );
    decodeDmaUnmapReply(r.body);
    for (let i = this.#memories.length - 1; i >= 0; i--) {
      const m = this.#memories[i]!;
      if (flags & DmaUnmapFlag.ALL || (m.iova === iova && BigInt(m.size) === size)) {
        this.#memories.splice(i, 1);
        this.#release(m);
      }
    }
  }

  async mapMemory(iova: bigint, size: number, flags: number = RW): Promise<ClientMemory> {
    const fd = native.memfdCreate("vfu-client-dma", size, true);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(native.mmap(fd, size, 0, true));
    } catch (err) {
      native.close(fd);
      throw err;
    }
    const mem: ClientMemory = { iova, size, bytes, fd: this.#core.own(fd) };
    try {
      await this.map({ iova, size: BigInt(size), flags, fd });
    } catch (err) {
      this.#release(mem);
      throw err;
    }
    this.#memories.push(mem);
    return mem;
  }

  async mapMessageMemory(iova: bigint, size: number, flags: number = RW): Promise<ClientMemory> {
    const mem: ClientMemory = { iova, size, bytes: new Uint8Array(size), fd: -1 };
    this.#memories.push(mem);
    try {
      await this.map({ iova, size: BigInt(size), flags });
    } catch (err) {
      this.#memories.splice(this.#memories.indexOf(mem), 1);
      throw err;
    }
    return mem;
  }

  /** Answer a command from the server (DMA_READ/DMA_WRITE to message-backed memory). */
  serve(frame: ReceivedFrame): void {
    const { header } = frame;
    const conn = this.#core.conn;
    const hadFds = frame.fds.length > 0;
    closeFds(frame.fds);
    // The server's DMA requests expect replies; one sent NO_REPLY is served but not answered.
    const answers = !(header.flags & HeaderFlag.NO_REPLY);
    const replyError = (errno: number): void => {
      this.served.errors++;
      if (answers) conn.send(encodeErrorReply(header.msgId, header.command, errno));
    };
    const reply = (body: Uint8Array): void => {
      if (answers)
        conn.send(
          encodeMessage({ msgId: header.msgId, command: header.command, flags: HeaderFlag.REPLY }, body),
        );
    };
    if (hadFds) {
      replyError(Errno.EINVAL);
      return;
    }
    const layout = this.#core.options.dmaLayout;
    try {
      const answer = this.#answer(header.command, frame.body, layout);
      if (typeof answer === "number") replyError(answer);
      else reply(answer);
    } catch (err) {
      replyError((err as { errno?: number }).errno ?? Errno.EINVAL);
    }
  }

  /** The reply body for a DMA request, or the errno to answer it with. */
  #answer(command: number, body: Uint8Array, layout: DmaLayout): Uint8Array | number {
    if (command === Command.DMA_READ) {
      const req = decodeDmaRead(body, layout);
      const mem = this.#messageMemory(req.addr, req.count);
      if (!mem) return Errno.EFAULT;
      const at = Number(req.addr - mem.iova);
      this.served.reads++;
      return encodeDmaReadReply(
        { addr: req.addr, count: req.count, data: mem.bytes.subarray(at, at + req.count) },
        layout,
      );
    }
    if (command === Command.DMA_WRITE) {
      const req = decodeDmaWrite(body, layout);
      const mem = this.#messageMemory(req.addr, req.count);
      if (!mem) return Errno.EFAULT;
      mem.bytes.set(req.data!, Number(req.addr - mem.iova));
      this.served.writes++;
      return encodeDmaWriteReply({ addr: req.addr, count: req.count }, layout);
    }
    return Errno.ENOSYS;
  }

  #messageMemory(addr: bigint, count: number): ClientMemory | null {
    for (const m of this.#memories) {
      if (m.fd < 0 && addr >= m.iova && addr + BigInt(count) <= m.iova + BigInt(m.size)) return m;
    }
    return null;
  }

  #release(m: ClientMemory): void {
    if (m.fd >= 0) {
      native.unmap(m.bytes.buffer as ArrayBuffer);
      this.#core.release(m.fd);
    }
  }

  /** The connection is gone: unmap and close every memory. */
  releaseAll(): void {
    for (const m of this.#memories) this.#release(m);
    this.#memories.length = 0;
  }
}
