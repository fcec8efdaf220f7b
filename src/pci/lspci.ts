// Config space in the text format `lspci -x` prints and `lspci -F <file>` reads back: a line
// starting with the function's address (`bus:slot.func`, the rest of the line is free text), then
// one line per 16 bytes, `<offset>: xx xx …` in lowercase hex. Feeding such a dump to
// `lspci -vvv -F` decodes a device's config space with the same code that decodes real hardware,
// which is how the golden tests (test/pci/lspci.test.ts) check that ours is coherent.
import { PciRegion } from "../../protocol/index.ts";
import type { DeviceModel } from "../device/device.ts";

export interface DumpOptions {
  /** The function's address on the first line (default "00:00.0"). */
  slot?: string;
  /** Free text after the address (default: none). */
  title?: string;
}

/** Format config-space bytes (256 or 4096) as an `lspci -F` dump. */
export function formatLspciDump(bytes: Uint8Array, opts: DumpOptions = {}): string {
  const slot = opts.slot ?? "00:00.0";
  if (!/^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(slot)) throw new Error(`slot "${slot}" is not bus:dev.fn`);
  const lines = [opts.title ? `${slot} ${opts.title}` : slot];
  for (let row = 0; row < bytes.length; row += 16) {
    const hex = Array.from(bytes.subarray(row, row + 16), (b) => b.toString(16).padStart(2, "0"));
    lines.push(`${row.toString(16).padStart(2, "0")}: ${hex.join(" ")}`);
  }
  return `${lines.join("\n")}\n`;
}

/** Read a device's whole config space (region 7) the way QEMU does, in one access, and format it. */
export async function dumpConfigSpace(device: DeviceModel, opts: DumpOptions = {}): Promise<string> {
  const region = device.region(PciRegion.CONFIG);
  if (!region || region.size === 0) throw new Error(`${device.name} has no config space (region 7)`);
  const bytes = await device.read(PciRegion.CONFIG, 0n, region.size);
  return formatLspciDump(bytes, { title: device.name, ...opts });
}
