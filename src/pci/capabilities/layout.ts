// Placing capabilities in config space. Standard capabilities live in [0x40, 0x100), each
// starting on a 4-byte boundary with an ID byte and a next-pointer byte; PCI Express extended
// capabilities live in [0x100, 0x1000), starting on 4-byte boundaries with a 32-bit header
// (ID 15:0, version 19:16, next 31:20), the first one at 0x100. A declaration may pin a
// capability's offset (to mirror a real device's layout); the others take the first free slot,
// in declaration order. The lists are linked in address order.
export interface CapPlacement {
  name: string;
  size: number;
  offset?: number;
}

export const STD_CAP_START = 0x40;
export const STD_CAP_END = 0x100;
export const EXT_CAP_START = 0x100;
export const EXT_CAP_END = 0x1000;

/** Offsets for `items` (same order) inside `[start, end)`. Throws on overlap or misalignment. */
export function placeCapabilities(items: readonly CapPlacement[], start: number, end: number): number[] {
  const used: Array<[number, number, string]> = [];
  const overlaps = (o: number, size: number) => used.find(([a, b]) => o < b && a < o + size);
  const offsets: number[] = new Array(items.length);
  items.forEach((item, i) => {
    if (item.offset === undefined) return;
    const o = item.offset;
    if (!Number.isInteger(o) || o % 4 !== 0 || o < start || o + item.size > end) {
      throw new Error(
        `capability ${item.name}: offset 0x${o.toString(16)} must be 4-byte aligned and keep its ` +
          `${item.size} bytes inside [0x${start.toString(16)}, 0x${end.toString(16)})`,
      );
    }
    const clash = overlaps(o, item.size);
    if (clash) throw new Error(`capability ${item.name} at 0x${o.toString(16)} overlaps ${clash[2]}`);
    used.push([o, o + item.size, item.name]);
    offsets[i] = o;
  });
  items.forEach((item, i) => {
    if (item.offset !== undefined) return;
    let o = start;
    for (;;) {
      const clash = overlaps(o, item.size);
      if (!clash) break;
      o = (clash[1] + 3) & ~3;
    }
    if (o + item.size > end) {
      throw new Error(`capability ${item.name} (${item.size} bytes) does not fit in config space`);
    }
    used.push([o, o + item.size, item.name]);
    offsets[i] = o;
  });
  return offsets;
}

/** For offsets of one list, the next pointer of each (0 for the last), in address order. */
export function nextPointers(offsets: readonly number[]): number[] {
  const sorted = [...offsets].sort((a, b) => a - b);
  return offsets.map((o) => sorted[sorted.indexOf(o) + 1] ?? 0);
}
