// Peer-to-peer DMA: the registry of devices served by this process whose regions may appear in
// another device's IO address space. The vfio-user client has no notion of peers (its DMA_MAPs
// carry guest memory only), so peer mappings are set up through the API:
//
//   const reg = peers.register("nvme0", nvmeDevice);          // once, by whoever serves nvme0
//   session.space.mapPeer(0x8000_0000n, peers.resolve("nvme0", 2), DmaMapFlag.READ | DmaMapFlag.WRITE);
//
// A device leaving the registry (`reg.unregister()`, e.g. when its endpoint closes) takes every
// peer mapping of its regions with it: each address space drops those areas as if the client had
// unmapped them (their users are told first). `peers` is the process-wide registry; tests may
// make their own.
import { Errno } from "../../protocol/index.ts";
import type { DeviceModel } from "../device/device.ts";
import type { CacheAttr, Region } from "../device/region.ts";
import { VfuError } from "../util/errors.ts";

/** One region of a registered device, as a target for `AddressSpace.mapPeer`. */
export interface PeerTarget {
  readonly name: string;
  readonly index: number;
  readonly device: DeviceModel;
  readonly region: Region;
  /** The region's cache attribute (declared, else UC for registers and WB for memory). */
  readonly cache: CacheAttr;
  /** False once the device has left the registry. */
  readonly alive: boolean;
  /** Run `fn` once when the device leaves the registry; returns the unsubscribe function. */
  onGone(fn: () => void): () => void;
}

export interface PeerRegistration {
  readonly name: string;
  unregister(): void;
}

interface Entry {
  device: DeviceModel;
  alive: boolean;
  watchers: Set<() => void>;
}

export class PeerRegistry {
  readonly #entries = new Map<string, Entry>();

  /** Offer `device`'s regions as peer targets under `name` (unique while registered). */
  register(name: string, device: DeviceModel): PeerRegistration {
    if (this.#entries.has(name))
      throw new VfuError(Errno.EEXIST, `a peer device named "${name}" is registered already`);
    const entry: Entry = { device, alive: true, watchers: new Set() };
    this.#entries.set(name, entry);
    return {
      name,
      unregister: () => {
        if (!entry.alive) return;
        entry.alive = false;
        if (this.#entries.get(name) === entry) this.#entries.delete(name);
        const watchers = [...entry.watchers];
        entry.watchers.clear();
        for (const w of watchers) w();
      },
    };
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  names(): string[] {
    return [...this.#entries.keys()];
  }

  /** Region `index` of the device registered as `name`. VfuError Errno.ENOENT when there is no such
   * device or region, Errno.EINVAL for a region of size 0. */
  resolve(name: string, index: number): PeerTarget {
    const entry = this.#entries.get(name);
    if (!entry) throw new VfuError(Errno.ENOENT, `no peer device named "${name}"`);
    const region = entry.device.region(index);
    if (!region) throw new VfuError(Errno.ENOENT, `peer device "${name}" has no region ${index}`);
    if (region.size === 0)
      throw new VfuError(Errno.EINVAL, `region ${index} of peer device "${name}" is absent (size 0)`);
    return {
      name,
      index,
      device: entry.device,
      region,
      cache: region.spec.cache ?? (region.memory ? "WB" : "UC"),
      get alive() {
        return entry.alive;
      },
      onGone(fn) {
        if (!entry.alive) {
          fn();
          return () => {};
        }
        entry.watchers.add(fn);
        return () => entry.watchers.delete(fn);
      },
    };
  }
}

/** The process-wide registry. */
export const peers = new PeerRegistry();
