// `ctx.dma`: the device's only way to reach client memory. It goes through the IO address space
// of the client currently connected; with no client every access is a "no-client" DMA fault.
// Faults are counted and logged, and reach the device as rejected promises (DmaFault).
import type { Logger } from "../util/log.ts";
import type { AddressSpace } from "./address-space.ts";
import { DmaFault } from "./faults.ts";

export interface DmaApi {
  /** Copy `length` bytes from client memory. Rejects with DmaFault. */
  read(iova: bigint, length: number): Promise<Uint8Array>;
  /** Copy `data` into client memory. Rejects with DmaFault. */
  write(iova: bigint, data: Uint8Array): Promise<void>;
  /** Faults seen so far. */
  readonly faults: number;
}

export class DeviceDma implements DmaApi {
  #space: AddressSpace | null = null;
  #faults = 0;
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  get faults(): number {
    return this.#faults;
  }

  attach(space: AddressSpace | null): void {
    this.#space = space;
  }

  async read(iova: bigint, length: number): Promise<Uint8Array> {
    try {
      return await this.#require(iova, length).read(iova, length);
    } catch (err) {
      throw this.#fault(err, iova, length);
    }
  }

  async write(iova: bigint, data: Uint8Array): Promise<void> {
    try {
      await this.#require(iova, data.length).write(iova, data);
    } catch (err) {
      throw this.#fault(err, iova, data.length);
    }
  }

  #require(iova: bigint, length: number): AddressSpace {
    if (!this.#space) throw new DmaFault("no-client", iova, length, "no client is connected");
    return this.#space;
  }

  #fault(err: unknown, iova: bigint, length: number): DmaFault {
    const fault =
      err instanceof DmaFault
        ? err
        : new DmaFault("transfer", iova, length, err instanceof Error ? err.message : String(err));
    this.#faults++;
    this.#log.warn(fault.message);
    return fault;
  }
}
