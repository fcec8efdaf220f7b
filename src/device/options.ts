// Device options: what `--set key=value` may set on a device. A model declares each option with a
// kind, a description and usually a default; the framework parses and checks every value before
// the device is built (the command line resolves every serve group before any socket listens),
// fills in the defaults, and hands the model typed values in `ctx.options`, typed by the
// declaration itself. `vfu list --options` prints the same declarations (`formatOptions`).
//
// Kinds and what they take on the command line:
//   integer  decimal, 0x hex, 0o octal or 0b binary, inside [min, max]; a number, or a bigint when
//            a bound is declared as a bigint (for 64-bit values)
//   size     bytes: digits with an optional binary unit K, M, G or T (x1024 each), optionally
//            followed by B or iB, any case ("4096", "64K", "16MiB"); a number
//   boolean  on/off, true/false, yes/no, 1/0
//   enum     one of the declared values (a union of string literals)
//   string   any text (a `rule` may narrow it)
//   path     a file-system path whose directory exists (the file itself may be created later)
// A `rule` adds a check the kind cannot express, with the words that say what it accepts.
//
// Values given as typed values (an embedding program's `new Device(def, { options })`) pass the
// same checks, so resolving is idempotent: resolved options may be resolved again.
import { statSync } from "node:fs";
import path from "node:path";

/** An extra check on a value: `test` says whether it is accepted, `accepts` says what is. */
export interface OptionRule<V> {
  readonly accepts: string;
  test(value: V): boolean;
}

interface OptionBase {
  readonly description: string;
}

export interface IntegerOptionSpec extends OptionBase {
  readonly kind: "integer";
  readonly min: number | bigint;
  readonly max: number | bigint;
  readonly default?: number | bigint;
  /** Print bounds and default in hex (`vfu list --options`, errors). */
  readonly hex?: boolean;
  readonly rule?: OptionRule<number | bigint>;
}

export interface SizeOptionSpec extends OptionBase {
  readonly kind: "size";
  readonly min?: number | string;
  readonly max?: number | string;
  readonly default?: number | string;
  readonly powerOfTwo?: boolean;
  readonly multipleOf?: number;
}

export interface BooleanOptionSpec extends OptionBase {
  readonly kind: "boolean";
  readonly default?: boolean;
}

export interface EnumOptionSpec extends OptionBase {
  readonly kind: "enum";
  readonly values: readonly string[];
  readonly default?: string;
}

export interface StringOptionSpec extends OptionBase {
  readonly kind: "string";
  readonly default?: string;
  readonly rule?: OptionRule<string>;
}

export interface PathOptionSpec extends OptionBase {
  readonly kind: "path";
  readonly default?: string;
}

export type OptionSpec =
  | IntegerOptionSpec
  | SizeOptionSpec
  | BooleanOptionSpec
  | EnumOptionSpec
  | StringOptionSpec
  | PathOptionSpec;

export type OptionKind = OptionSpec["kind"];
export const OPTION_KINDS: readonly OptionKind[] = ["integer", "size", "boolean", "enum", "string", "path"];

/** A device's option declarations, by key. */
export type OptionDecls = Readonly<Record<string, OptionSpec>>;

/** The declarations of a device that takes no options. */
export type NoOptions = Readonly<Record<never, OptionSpec>>;

/** The value type an option of declaration `S` has. */
export type OptionValueOf<S> = S extends { readonly kind: "integer" }
  ? S extends { readonly min: bigint } | { readonly max: bigint }
    ? bigint
    : number
  : S extends { readonly kind: "size" }
    ? number
    : S extends { readonly kind: "boolean" }
      ? boolean
      : S extends { readonly kind: "enum"; readonly values: readonly (infer V)[] }
        ? V
        : string;

/** The resolved options of declarations `O`: each declared key with its typed value; keys
 * without a default are `undefined` when not given. */
export type OptionValues<O extends OptionDecls = OptionDecls> = {
  readonly [K in keyof O]: O[K] extends { readonly default: unknown }
    ? OptionValueOf<O[K]>
    : OptionValueOf<O[K]> | undefined;
};

/** A value as an option may be given: text from `--set`, or already typed. */
export type OptionInput = string | number | bigint | boolean | undefined;

/** A refused option value or declaration; the message names the device, the key, the value and
 * what is accepted. */
export class OptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OptionError";
  }
}

// ---- sizes --------------------------------------------------------------------------------

const UNITS: Readonly<Record<string, number>> = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };
const SIZE_RE = /^(\d+)\s*(?:([kmgt])(?:i?b)?|b)?$/i;

/** Bytes of a size: digits with an optional binary unit K/M/G/T, optionally followed by B or iB
 * ("4096", "64K", "16MiB", "1 G"). Throws a RangeError for anything else or above 2^53-1. */
export function parseSize(text: string): number {
  const bytes = sizeBytes(text);
  if (bytes === "syntax")
    throw new RangeError(`"${text}" is not a size (digits with K, M, G or T: 4096, 64K, 16M)`);
  if (bytes === "large") throw new RangeError(`size "${text}" is larger than 2^53-1 bytes`);
  return bytes;
}

function sizeBytes(text: string): number | "syntax" | "large" {
  const m = SIZE_RE.exec(text.trim());
  if (!m) return "syntax";
  const bytes = Number(m[1]) * UNITS[(m[2] ?? "").toLowerCase()]!;
  return Number.isSafeInteger(bytes) ? bytes : "large";
}

/** A size in the largest unit that divides it ("16M", "4K", "1000"). */
export function formatSize(bytes: number): string {
  for (const [unit, factor] of [
    ["T", 2 ** 40],
    ["G", 2 ** 30],
    ["M", 2 ** 20],
    ["K", 2 ** 10],
  ] as const) {
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return String(bytes);
}

// ---- parsing one value --------------------------------------------------------------------

type Parsed = { ok: true; value: string | number | bigint | boolean } | { ok: false; why: string };

const refuse = (why: string): Parsed => ({ ok: false, why });
const accept = (value: string | number | bigint | boolean): Parsed => ({ ok: true, value });

const INT_RE = /^([+-]?)(0x[0-9a-f]+|0o[0-7]+|0b[01]+|\d+)$/i;
const TRUE = new Set(["on", "true", "yes", "1"]);
const FALSE = new Set(["off", "false", "no", "0"]);

const isBig = (s: IntegerOptionSpec): boolean => typeof s.min === "bigint" || typeof s.max === "bigint";

function showInt(s: IntegerOptionSpec, v: number | bigint): string {
  if (!s.hex) return String(v);
  return v < 0 ? `-0x${(-BigInt(v)).toString(16)}` : `0x${v.toString(16)}`;
}

function sizeBound(v: number | string | undefined): number | undefined {
  return v === undefined ? undefined : typeof v === "number" ? v : parseSize(v);
}

function parseInteger(s: IntegerOptionSpec, given: Exclude<OptionInput, undefined>): Parsed {
  let v: bigint;
  if (typeof given === "bigint") v = given;
  else if (typeof given === "number") {
    if (!Number.isInteger(given)) return refuse("not an integer");
    v = BigInt(given);
  } else if (typeof given === "string") {
    const m = INT_RE.exec(given.trim());
    if (!m) return refuse("not an integer");
    v = BigInt(m[2]!);
    if (m[1] === "-") v = -v;
  } else return refuse("not an integer");
  if (v < BigInt(s.min) || v > BigInt(s.max)) return refuse("out of range");
  const value = isBig(s) ? v : Number(v);
  if (s.rule && !s.rule.test(value)) return refuse(`not ${s.rule.accepts}`);
  return accept(value);
}

function parseSizeValue(s: SizeOptionSpec, given: Exclude<OptionInput, undefined>): Parsed {
  let v: number;
  if (typeof given === "number") {
    if (!Number.isSafeInteger(given) || given < 0) return refuse("not a size");
    v = given;
  } else if (typeof given === "string") {
    const bytes = sizeBytes(given);
    if (bytes === "syntax") return refuse("not a size");
    if (bytes === "large") return refuse("too large");
    v = bytes;
  } else return refuse("not a size");
  const min = sizeBound(s.min);
  const max = sizeBound(s.max);
  if ((min !== undefined && v < min) || (max !== undefined && v > max)) return refuse("out of range");
  if (s.powerOfTwo && (v === 0 || 2 ** Math.round(Math.log2(v)) !== v)) return refuse("not a power of two");
  if (s.multipleOf !== undefined && v % s.multipleOf !== 0)
    return refuse(`not a multiple of ${s.multipleOf}`);
  return accept(v);
}

function parsePath(given: string): Parsed {
  if (given === "") return refuse("empty");
  if (given.includes("\0")) return refuse("contains a NUL byte");
  const dir = path.dirname(path.resolve(given));
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    return refuse(`directory ${dir} does not exist`);
  }
  if (!isDir) return refuse(`${dir} is not a directory`);
  return accept(given);
}

function parseValue(s: OptionSpec, given: Exclude<OptionInput, undefined>): Parsed {
  switch (s.kind) {
    case "integer":
      return parseInteger(s, given);
    case "size":
      return parseSizeValue(s, given);
    case "boolean": {
      if (typeof given === "boolean") return accept(given);
      const t = String(given).trim().toLowerCase();
      if (TRUE.has(t)) return accept(true);
      if (FALSE.has(t)) return accept(false);
      return refuse("not on or off");
    }
    case "enum": {
      const t = typeof given === "string" ? given.trim() : String(given);
      return s.values.includes(t) ? accept(t) : refuse("not one of the values");
    }
    case "string": {
      if (typeof given !== "string") return refuse("not text");
      if (s.rule && !s.rule.test(given)) return refuse(`not ${s.rule.accepts}`);
      return accept(given);
    }
    case "path":
      return typeof given === "string" ? parsePath(given) : refuse("not a path");
  }
}

// ---- describing -----------------------------------------------------------------------------

/** What an option accepts, in the words `vfu list --options` and the errors use. */
export function describeAccepted(s: OptionSpec): string {
  switch (s.kind) {
    case "integer": {
      const range = `integer ${showInt(s, s.min)}-${showInt(s, s.max)}`;
      return s.rule ? `${range}, ${s.rule.accepts}` : range;
    }
    case "size": {
      const min = sizeBound(s.min);
      const max = sizeBound(s.max);
      let text = "size";
      if (min !== undefined && max !== undefined) text += ` ${formatSize(min)}-${formatSize(max)}`;
      else if (min !== undefined) text += ` from ${formatSize(min)}`;
      else if (max !== undefined) text += ` up to ${formatSize(max)}`;
      if (s.powerOfTwo) text += ", a power of two";
      if (s.multipleOf !== undefined) text += `, a multiple of ${formatSize(s.multipleOf)}`;
      return text;
    }
    case "boolean":
      return "on|off";
    case "enum":
      return s.values.join("|");
    case "string":
      return s.rule ? s.rule.accepts : "text";
    case "path":
      return "path";
  }
}

function showValue(s: OptionSpec, v: string | number | bigint | boolean): string {
  if (s.kind === "integer" && (typeof v === "number" || typeof v === "bigint")) return showInt(s, v);
  if (s.kind === "size" && typeof v === "number") return formatSize(v);
  if (s.kind === "boolean" && typeof v === "boolean") return v ? "on" : "off";
  return String(v);
}

function refusal(device: string, key: string, s: OptionSpec, given: unknown, why: string): OptionError {
  return new OptionError(
    `device ${device}: option ${key}=${String(given)} is refused (${why}); it takes ${describeAccepted(s)}`,
  );
}

// ---- declarations and resolution ---------------------------------------------------------

/** Check a device's declarations (kinds, bounds, defaults); called when the device is defined.
 * Throws an OptionError naming the device and the key. */
export function checkOptionDecls(device: string, decls: OptionDecls | undefined): void {
  for (const [key, s] of Object.entries(decls ?? {})) {
    const bad = (what: string) => new OptionError(`device ${device}: option ${key}: ${what}`);
    if (!/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/.test(key)) throw bad("the key is not kebab-case");
    if (!OPTION_KINDS.includes(s.kind))
      throw bad(`kind "${String(s.kind)}" is not one of ${OPTION_KINDS.join(", ")}`);
    if (typeof s.description !== "string" || s.description === "") throw bad("has no description");
    if (s.kind === "integer") {
      for (const b of [s.min, s.max])
        if (typeof b === "number" && !Number.isSafeInteger(b)) throw bad(`bound ${b} is not a safe integer`);
      if (BigInt(s.min) > BigInt(s.max)) throw bad(`min ${s.min} is above max ${s.max}`);
    }
    if (s.kind === "size") {
      let min: number | undefined;
      let max: number | undefined;
      try {
        min = sizeBound(s.min);
        max = sizeBound(s.max);
      } catch (err) {
        throw bad((err as Error).message);
      }
      if (min !== undefined && max !== undefined && min > max)
        throw bad(`min ${s.min} is above max ${s.max}`);
    }
    if (s.kind === "enum") {
      if (s.values.length === 0) throw bad("an enum without values");
      if (new Set(s.values).size !== s.values.length) throw bad("enum values repeat");
    }
    if (s.default !== undefined && s.kind !== "path") {
      const r = parseValue(s, s.default);
      if (!r.ok)
        throw bad(`the default ${String(s.default)} is refused (${r.why}); it takes ${describeAccepted(s)}`);
    }
  }
}

/**
 * Resolve given values against a device's declarations: every given value parsed and checked
 * (text from `--set`, or typed values), every declared default filled in. Throws an OptionError
 * for an unknown key (naming the known ones) or a refused value (naming the device, the key, the
 * value and what the option takes).
 */
export function resolveOptions<O extends OptionDecls>(
  def: { readonly name: string; readonly options?: O },
  given: Readonly<Record<string, OptionInput>>,
): OptionValues<O> {
  const declared: OptionDecls = def.options ?? {};
  for (const key of Object.keys(given)) {
    if (!Object.hasOwn(declared, key)) {
      const known = Object.keys(declared);
      throw new OptionError(
        `device ${def.name} has no option "${key}"` +
          (known.length ? ` (it has: ${known.join(", ")})` : " (it takes no options)"),
      );
    }
  }
  const out: Record<string, string | number | bigint | boolean> = {};
  for (const [key, s] of Object.entries(declared)) {
    const value = given[key] ?? s.default;
    if (value === undefined) continue;
    const r = parseValue(s, value);
    if (!r.ok) throw refusal(def.name, key, s, value, r.why);
    out[key] = r.value;
  }
  return out as OptionValues<O>;
}

/** A device's options for `vfu list --options`, one indented line each:
 * `key[=default]  what it takes  description`. */
export function formatOptions(decls: OptionDecls | undefined): string {
  const entries = Object.entries(decls ?? {});
  if (entries.length === 0) return "    (no options)\n";
  const keys = entries.map(([key, s]) =>
    s.default === undefined ? key : `${key}=${showValue(s, s.default)}`,
  );
  const takes = entries.map(([, s]) => describeAccepted(s));
  const kw = Math.max(...keys.map((k) => k.length));
  const tw = Math.max(...takes.map((k) => k.length));
  return entries
    .map(([, s], i) => `    ${keys[i]!.padEnd(kw)}  ${takes[i]!.padEnd(tw)}  ${s.description}\n`)
    .join("");
}
