// Mapping a region's memory through the fd its region info offers: the whole region
// (`mmapRegion`) or one view of one SPARSE_MMAP area with a cache attribute (`mmapView`). The fd is
// closed once mapped; the mapping stays until it is unmapped (`mapping.unmap()` or
// `client.unmap(bytes)`) or the client closes. An unmapped buffer is detached by the addon, so a
// stale view reads as empty instead of faulting.

import { native } from "../../native/index.ts";
import { type CacheAttrName, Command, Errno, RegionCapId } from "../../protocol/index.ts";
import { closeFds } from "../util/fds.ts";
import { ClientError } from "./client-core.ts";
import type { RegionInfoResult } from "./device-info.ts";

/** One mapping of (part of) a region. */
export class RegionMapping {
  /** The mapped bytes (empty once unmapped). */
  readonly bytes: Uint8Array;
  /** Where the mapping starts in the region. */
  readonly offset: number;
  /** The view's cache attribute, or null when the server describes no views. */
  readonly cache: CacheAttrName | null;
  /** The fd offset that was mapped. */
  readonly cookie: bigint;
  readonly #forget: (m: RegionMapping) => void;
  #unmapped = false;

  constructor(
    bytes: Uint8Array,
    place: { offset: number; cache: CacheAttrName | null; cookie: bigint },
    forget: (m: RegionMapping) => void,
  ) {
    this.bytes = bytes;
    this.offset = place.offset;
    this.cache = place.cache;
    this.cookie = place.cookie;
    this.#forget = forget;
  }

  get unmapped(): boolean {
    return this.#unmapped;
  }

  /** Release the mapping; every view of its bytes then reads as empty. Idempotent. */
  unmap(): void {
    if (this.#unmapped) return;
    this.#unmapped = true;
    this.#forget(this);
    native.unmap(this.bytes.buffer as ArrayBuffer);
  }
}

/** The client's live mappings, unmapped when it closes. */
export class RegionMappings {
  readonly #live = new Set<RegionMapping>();

  /** Map the whole region `info` describes. */
  mapRegion(info: RegionInfoResult): RegionMapping {
    if (info.fd === null)
      throw new ClientError(
        Command.DEVICE_GET_REGION_INFO,
        Errno.EINVAL,
        `region ${info.index} offers no fd`,
      );
    return this.#map(info.fd, Number(info.size), { offset: 0, cache: null, cookie: info.offset });
  }

  /** Map area `area` (default 0, in the SPARSE_MMAP cap's order) of the region `info` describes,
   * with the cache attribute `cache` (default: the area's default view). Without the cache
   * capability only the default (a plain area) can be had. */
  mapView(info: RegionInfoResult, opts: { area?: number; cache?: CacheAttrName } = {}): RegionMapping {
    const fail = (why: string): never => {
      if (info.fd !== null) closeFds([info.fd]);
      throw new ClientError(Command.DEVICE_GET_REGION_INFO, Errno.EINVAL, `region ${info.index}: ${why}`);
    };
    if (info.fd === null) return fail("offers no fd");
    const area = opts.area ?? 0;
    const sparse = info.caps.find((c) => c.id === RegionCapId.SPARSE_MMAP);
    const areas = sparse && "areas" in sparse ? sparse.areas : [{ offset: 0n, size: info.size }];
    const a = areas[area];
    if (!a) return fail(`has no mmap area ${area} (it has ${areas.length})`);
    let cookie = info.offset + a.offset;
    let cache: CacheAttrName | null = null;
    if (info.cache) {
      const views = info.cache.views.filter((v) => v.area === area);
      const v =
        opts.cache === undefined ? views.find((x) => x.isDefault) : views.find((x) => x.cache === opts.cache);
      if (!v) return fail(`area ${area} has no ${opts.cache ?? "default"} view`);
      cookie = v.cookie;
      cache = v.cache;
    } else if (opts.cache !== undefined) {
      return fail(`describes no mmap views (no cache capability), so no ${opts.cache} view`);
    }
    return this.#map(info.fd, Number(a.size), { offset: Number(a.offset), cache, cookie });
  }

  /** The live mapping whose bytes are `bytes` (the same buffer), or undefined. */
  find(bytes: Uint8Array): RegionMapping | undefined {
    for (const m of this.#live) if (m.bytes.buffer === bytes.buffer) return m;
    return undefined;
  }

  unmapAll(): void {
    for (const m of [...this.#live]) m.unmap();
  }

  /** mmap `size` bytes of `fd` at the cookie; the fd is closed either way. */
  #map(
    fd: number,
    size: number,
    place: { offset: number; cache: CacheAttrName | null; cookie: bigint },
  ): RegionMapping {
    try {
      const ab = native.mmap(fd, size, Number(place.cookie), true);
      const m = new RegionMapping(new Uint8Array(ab), place, (x) => this.#live.delete(x));
      this.#live.add(m);
      return m;
    } finally {
      closeFds([fd]);
    }
  }
}
