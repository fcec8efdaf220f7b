// A platform device's device-tree description and its rendering as device-tree source (DTS).
//
// A platform device has no config space to say what it is, so it says it the way ARM and RISC-V
// firmware does: a device-tree node. `compatible` names the binding a driver matches, `reg` lists
// its MMIO regions, `interrupts` its interrupt lines, `clocks` its input clocks, and any other
// property is given as declared.
//
// The node is a template, not a placement: a vfio-user device has no bus address. Addresses are
// vfio-user regions, so the root node has `#address-cells = <2>` (region index, offset in the
// region) and `#size-cells = <1>`; reg entry i is region i from offset 0. Interrupts refer to a
// stand-in interrupt controller whose three cells are <vfio-user irq index, vector, sense>,
// sense being the standard flags of dt-bindings/interrupt-controller/irq.h (1 rising edge,
// 2 falling edge, 3 both edges, 4 active-high level, 8 active-low level). Clocks are fixed-clock
// nodes with the declared frequency. A program that places the device in a guest rewrites reg
// and interrupts for its own buses, keeping the rest.
//
// `renderDts` is deterministic: the same description always renders to the same bytes, which
// is what a platform device serves in its device-tree region (region-type.ts).
import type { CacheAttr } from "../device/region.ts";

/** The electrical sense of an interrupt line. Edge lines: rising, falling, both; level: high, low. */
export type InterruptSense = "rising" | "falling" | "both" | "high" | "low";

/** The value of a device-tree property, as written in DTS:
 * `true` an empty (boolean) property; a number one 32-bit cell; a number array a cell list;
 * a bigint one 64-bit value (`/bits/ 64`); a string or string array a string list; bytes `[..]`. */
export type DtPropertyValue =
  | true
  | number
  | bigint
  | string
  | readonly number[]
  | readonly string[]
  | Uint8Array;

export interface DtReg {
  /** The region's name (also in `reg-names`). */
  name: string;
  /** vfio-user region index. */
  region: number;
  /** Bytes. */
  size: number;
  /** Declared access widths in bytes; null when any width is decoded. */
  accessSizes: number[] | null;
  cache: CacheAttr;
  readable: boolean;
  writable: boolean;
}

export interface DtInterrupt {
  /** The line's name (also in `interrupt-names`). */
  name: string;
  /** vfio-user interrupt index and vector within it. */
  index: number;
  vector: number;
  kind: "edge" | "level";
  sense: InterruptSense;
}

export interface DtClock {
  /** The clock's name in `clock-names`. */
  name: string;
  /** Hz. */
  frequency: number;
}

/** A platform device as a device-tree node (see the file comment for the address scheme). */
export interface PlatformDescription {
  /** The device model's name (`vfu serve <device>`). */
  device: string;
  summary: string;
  /** The node's generic name ("gpio", "serial", ...). */
  nodeName: string;
  compatible: string[];
  reg: DtReg[];
  interrupts: DtInterrupt[];
  clocks: DtClock[];
  properties: Record<string, DtPropertyValue>;
  /** The region index that serves this description as DTS over vfio-user, or null if none. */
  deviceTreeRegion: number | null;
}

/** Flags of the `interrupts` sense cell (dt-bindings/interrupt-controller/irq.h). */
export const DtIrqType = {
  EDGE_RISING: 1,
  EDGE_FALLING: 2,
  EDGE_BOTH: 3,
  LEVEL_HIGH: 4,
  LEVEL_LOW: 8,
} as const;

const SENSE_FLAGS: Record<InterruptSense, number> = {
  rising: DtIrqType.EDGE_RISING,
  falling: DtIrqType.EDGE_FALLING,
  both: DtIrqType.EDGE_BOTH,
  high: DtIrqType.LEVEL_HIGH,
  low: DtIrqType.LEVEL_LOW,
};

/** Properties the platform layer writes itself; a device may not declare them. */
export const GENERATED_PROPERTIES: ReadonlySet<string> = new Set([
  "compatible",
  "reg",
  "reg-names",
  "interrupts",
  "interrupt-names",
  "interrupt-parent",
  "interrupts-extended",
  "clocks",
  "clock-names",
  "status",
  "phandle",
]);

const PROPERTY_NAME = /^[0-9a-zA-Z,._+?#-]{1,31}$/;
const NODE_NAME = /^[a-zA-Z][0-9a-zA-Z,._+-]{0,30}$/;

/** Throw an Error naming what is wrong with a node name, a property or a string. */
export function checkNodeName(name: string): void {
  if (!NODE_NAME.test(name)) {
    throw new Error(
      `device-tree node name "${name}" must be 1-31 of [0-9a-zA-Z,._+-], starting with a letter`,
    );
  }
}

export function checkProperty(name: string, value: DtPropertyValue): void {
  if (!PROPERTY_NAME.test(name)) {
    throw new Error(`device-tree property name "${name}" must be 1-31 of [0-9a-zA-Z,._+?#-]`);
  }
  if (GENERATED_PROPERTIES.has(name)) {
    throw new Error(`device-tree property "${name}" is written by the platform layer from the declaration`);
  }
  const cell = (n: number): void => {
    if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff)
      throw new Error(`device-tree property "${name}": ${n} is not a 32-bit cell`);
  };
  if (value === true || value instanceof Uint8Array) return;
  if (typeof value === "number") cell(value);
  else if (typeof value === "bigint") {
    if (value < 0n || value > 0xffff_ffff_ffff_ffffn)
      throw new Error(`device-tree property "${name}": ${value} is not a 64-bit value`);
  } else if (typeof value === "string") checkString(name, value);
  else {
    if (value.length === 0) throw new Error(`device-tree property "${name}": an empty list (use true)`);
    for (const v of value) {
      if (typeof v === "number") cell(v);
      else if (typeof v === "string") checkString(name, v);
      else throw new Error(`device-tree property "${name}": lists hold numbers or strings`);
    }
    if (new Set(value.map((v) => typeof v)).size > 1)
      throw new Error(`device-tree property "${name}": a list mixes numbers and strings`);
  }
}

export function checkString(what: string, s: string): void {
  if (s.includes("\0")) throw new Error(`${what}: a device-tree string cannot hold NUL`);
}

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

function quote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

function renderValue(value: DtPropertyValue): string | null {
  if (value === true) return null;
  if (value instanceof Uint8Array) {
    return `[${Array.from(value, (b) => b.toString(16).padStart(2, "0")).join(" ")}]`;
  }
  if (typeof value === "number") return `<${value}>`;
  if (typeof value === "bigint") return `/bits/ 64 <${hex(value)}>`;
  if (typeof value === "string") return quote(value);
  if (value.length > 0 && typeof value[0] === "string")
    return (value as readonly string[]).map(quote).join(", ");
  return `<${(value as readonly number[]).join(" ")}>`;
}

/** The label of the fixed-clock node for a clock name. */
function clockLabel(name: string): string {
  return `clk_${name.replace(/[^0-9a-zA-Z_]/g, "_")}`;
}

const INTC_LABEL = "vfu_intc";

function describeReg(r: DtReg): string {
  const widths = r.accessSizes ? `${r.accessSizes.join("/")}-byte accesses` : "any access width";
  const dir = r.readable && r.writable ? "read/write" : r.readable ? "read-only" : "write-only";
  return `${r.name}: region ${r.region}, ${r.size} bytes, ${widths}, ${r.cache}, ${dir}`;
}

/** Device-tree source for a description (the file comment explains the address scheme). */
export function renderDts(d: PlatformDescription): string {
  const out: string[] = [];
  const line = (depth: number, s = ""): void => {
    out.push(s === "" ? "" : `${"\t".repeat(depth)}${s}`);
  };
  line(0, "/dts-v1/;");
  line(0);
  line(0, `/* ${d.device}: ${d.summary.replace(/\*\//g, "* /")} */`);
  line(0, "/* Generated by vfio-user-node. reg = <vfio-user region, offset, size>;");
  line(0, " * interrupts = <vfio-user irq index, vector, sense> on the stand-in controller. */");
  line(0);
  line(0, "/ {");
  line(1, "#address-cells = <2>;");
  line(1, "#size-cells = <1>;");
  if (d.interrupts.length > 0) {
    line(0);
    line(1, `${INTC_LABEL}: interrupt-controller {`);
    line(2, 'compatible = "vfio-user-node,irq-index";');
    line(2, "interrupt-controller;");
    line(2, "#interrupt-cells = <3>;");
    line(2, "#address-cells = <0>;");
    line(1, "};");
  }
  for (const c of d.clocks) {
    line(0);
    line(1, `${clockLabel(c.name)}: clock-${c.name.replace(/[^0-9a-zA-Z,.+-]/g, "-")} {`);
    line(2, 'compatible = "fixed-clock";');
    line(2, "#clock-cells = <0>;");
    line(2, `clock-frequency = <${c.frequency}>;`);
    line(2, `clock-output-names = ${quote(c.name)};`);
    line(1, "};");
  }
  line(0);
  const first = d.reg[0];
  line(1, `${d.nodeName}${first ? `@${first.region.toString(16)},0` : ""} {`);
  line(2, `compatible = ${d.compatible.map(quote).join(", ")};`);
  if (d.reg.length > 0) {
    for (const r of d.reg) line(2, `/* ${describeReg(r)} */`);
    line(2, `reg = ${d.reg.map((r) => `<${hex(r.region)} 0x0 ${hex(r.size)}>`).join(", ")};`);
    line(2, `reg-names = ${d.reg.map((r) => quote(r.name)).join(", ")};`);
  }
  if (d.interrupts.length > 0) {
    for (const i of d.interrupts) line(2, `/* ${i.name}: ${i.kind}-triggered, ${i.sense} */`);
    line(2, `interrupt-parent = <&${INTC_LABEL}>;`);
    line(
      2,
      `interrupts = ${d.interrupts.map((i) => `<${i.index} ${i.vector} ${SENSE_FLAGS[i.sense]}>`).join(", ")};`,
    );
    line(2, `interrupt-names = ${d.interrupts.map((i) => quote(i.name)).join(", ")};`);
  }
  if (d.clocks.length > 0) {
    line(2, `clocks = ${d.clocks.map((c) => `<&${clockLabel(c.name)}>`).join(", ")};`);
    line(2, `clock-names = ${d.clocks.map((c) => quote(c.name)).join(", ")};`);
  }
  for (const [name, value] of Object.entries(d.properties)) {
    const v = renderValue(value);
    line(2, v === null ? `${name};` : `${name} = ${v};`);
  }
  line(1, "};");
  line(0, "};");
  return `${out.join("\n")}\n`;
}

/** The description as JSON (bigints as hex strings, bytes as number arrays), for `vfu describe --json`. */
export function formatDescriptionJson(d: PlatformDescription): string {
  return `${JSON.stringify(
    d,
    (_key, value: unknown) => {
      if (typeof value === "bigint") return hex(value);
      if (value instanceof Uint8Array) return Array.from(value);
      return value;
    },
    2,
  )}\n`;
}
