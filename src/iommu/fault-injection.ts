// Named fault-injection points on the map, unmap and translate paths of the IO address space.
// Outside tests they are inert: `inject(point)` is one check of a module-level boolean. A test
// arms the registry, either to fail the nth hit of any point (a fail-nth sweep: n = 1, 2, … until
// a run completes without a failure, proving that every failure on every path leaves a whole
// address space and no leaked fd), or to fail one named point.
//
// The points, in the order a map → DMA → unmap lifetime meets them:
//   map.after-fstat       an fd-backed map has checked its fd, nothing is built yet
//   map.after-dup         a peer map has duplicated the peer region's fd (the dup must be closed)
//   map.before-insert     the area and its backing exist, the lookup tree does not hold it yet
//   map.after-insert      the area is in the tree (a failure here must take it out again)
//   translate             an address is being looked up for a device access
//   window.mmap           a 1 GiB window of an fd backing is about to be mmapped
//   window.after-mmap     the window is mapped but not yet recorded (it must be unmapped again)
//   unmap.before-remove   an unmap found its area; nothing has changed yet (the unmap fails whole)
//   unmap.before-release  the area is out of the tree, its users have been told; it must still be
//                         released completely (the failure is logged, the unmap succeeds)
//   unmap.munmap          one window is being unmapped (the others and the fd are still released)

export const FAULT_POINTS = [
  "map.after-fstat",
  "map.after-dup",
  "map.before-insert",
  "map.after-insert",
  "translate",
  "window.mmap",
  "window.after-mmap",
  "unmap.before-remove",
  "unmap.before-release",
  "unmap.munmap",
] as const;

export type FaultPoint = (typeof FAULT_POINTS)[number];

/** The error an armed point throws: ENOMEM, as the allocation or syscall it stands for would. */
export class InjectedFault extends Error {
  readonly errno = 12;
  readonly point: FaultPoint;
  constructor(point: FaultPoint, hit: number) {
    super(`injected failure at ${point} (hit ${hit})`);
    this.name = "InjectedFault";
    this.point = point;
  }
}

let armed = false;
let failAt = 0;
let only: FaultPoint | null = null;
let hitsSoFar = 0;
let fired: FaultPoint | null = null;
const perPoint = new Map<FaultPoint, number>();

/** Called on the hot paths: costs one boolean check while disarmed. Throws InjectedFault. */
export function inject(point: FaultPoint): void {
  if (armed) hit(point);
}

function hit(point: FaultPoint): void {
  perPoint.set(point, (perPoint.get(point) ?? 0) + 1);
  if (only !== null && point !== only) return;
  hitsSoFar++;
  if (hitsSoFar === failAt) {
    fired = point;
    throw new InjectedFault(point, hitsSoFar);
  }
}

export const faultInjection = {
  /** Fail the nth hit (1-based) of any point, or of `point` only; later hits pass. */
  failNth(n: number, point: FaultPoint | null = null): void {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`fail-nth needs n >= 1, not ${n}`);
    armed = true;
    failAt = n;
    only = point;
    hitsSoFar = 0;
    fired = null;
    perPoint.clear();
  },
  /** Count hits without failing any (to learn which points a scenario reaches). */
  count(): void {
    faultInjection.failNth(Number.MAX_SAFE_INTEGER);
  },
  disarm(): void {
    armed = false;
    failAt = 0;
    only = null;
  },
  get armed(): boolean {
    return armed;
  },
  /** The point that failed since the last arming, or null if none did. */
  get fired(): FaultPoint | null {
    return fired;
  },
  /** Hits per point since the last arming. */
  hits(): ReadonlyMap<FaultPoint, number> {
    return perPoint;
  },
};
