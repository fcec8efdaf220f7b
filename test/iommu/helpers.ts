// Shared set-up for the IOMMU tests: a device served over the in-memory pair with its DeviceDma
// in the test's hands, and small address-space builders.
import { U64_MAX } from "../../protocol/index.ts";

export { U64_MAX };

import { scratchpad } from "../../devices/scratchpad/index.ts";
import {
  AddressSpace,
  type ClientOptions,
  createMemoryPair,
  Device,
  type DeviceDefinition,
  DeviceDma,
  MemorySink,
  type Session,
  SinkLogger,
  serveConnection,
  VfioUserClient,
} from "../../src/index.ts";
import type { MessagePort } from "../../src/iommu/backing.ts";

export const RW = 3;
export const RO = 1;

export interface Harness {
  client: VfioUserClient;
  session: Session;
  dma: DeviceDma;
  sink: MemorySink;
  close(): Promise<void>;
}

export async function harness(
  opts: { def?: DeviceDefinition; client?: ClientOptions } = {},
): Promise<Harness> {
  const [a, b] = createMemoryPair();
  const sink = new MemorySink();
  const log = new SinkLogger(sink, "debug");
  const dma = new DeviceDma(log);
  const def = opts.def ?? scratchpad;
  const session = serveConnection(b, (d, l) => new Device(def, { dma: d, log: l }), { log, dma });
  const client = await VfioUserClient.over(a, opts.client);
  return {
    client,
    session,
    dma,
    sink,
    async close() {
      client.close();
      await session.ended;
      session.device.dispose();
    },
  };
}

/** A MessagePort over a sparse in-process memory (a Map of 4 KiB pages), so message-backed areas
 * anywhere in the 64-bit space cost nothing. */
export class SparseMemory implements MessagePort {
  readonly pages = new Map<bigint, Uint8Array>();
  reads = 0;
  writes = 0;
  delayMs = 0;

  #page(p: bigint): Uint8Array {
    let page = this.pages.get(p);
    if (!page) {
      page = new Uint8Array(4096);
      this.pages.set(p, page);
    }
    return page;
  }

  peek(iova: bigint, length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      const a = iova + BigInt(i);
      out[i] = this.pages.get(a >> 12n)?.[Number(a & 0xfffn)] ?? 0;
    }
    return out;
  }

  poke(iova: bigint, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const a = iova + BigInt(i);
      this.#page(a >> 12n)[Number(a & 0xfffn)] = data[i]!;
    }
  }

  async read(iova: bigint, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    this.reads++;
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    signal?.throwIfAborted();
    return this.peek(iova, length);
  }

  async write(iova: bigint, data: Uint8Array, signal?: AbortSignal): Promise<void> {
    this.writes++;
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    signal?.throwIfAborted();
    this.poke(iova, data);
  }
}

export function space(opts: { maxDmaMaps?: number; pgsize?: number } = {}): AddressSpace {
  return new AddressSpace({ maxDmaMaps: opts.maxDmaMaps ?? 65535, pgsize: opts.pgsize ?? 4096 });
}

export function bytes(...values: number[]): Uint8Array {
  return Uint8Array.from(values);
}

/** The errno of a rejected promise or thrown call (0 when it succeeded). */
export async function errnoOf(p: Promise<unknown> | (() => unknown)): Promise<number> {
  try {
    await (typeof p === "function" ? p() : p);
    return 0;
  } catch (err) {
    return (err as { errno?: number }).errno ?? -1;
  }
}

/** What `f` throws (undefined when it returns), for `t.match(thrown(f), { errno })`. */
export function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (err) {
    return err;
  }
  return undefined;
}
