// Device options: what `--set key=value` may set on a device, declared by the model with a
// description and a default. The framework resolves the values before the device is built.

export interface OptionSpec {
  description: string;
  default?: string;
}

/** Resolve `--set` values against the declared options: unknown keys are an error naming them. */
export function resolveOptions(
  def: { name: string; options?: Readonly<Record<string, OptionSpec>> },
  given: Readonly<Record<string, string>>,
): Record<string, string> {
  const declared = def.options ?? {};
  const out: Record<string, string> = {};
  for (const [key, spec] of Object.entries(declared)) {
    if (spec.default !== undefined) out[key] = spec.default;
  }
  for (const [key, value] of Object.entries(given)) {
    if (!(key in declared)) {
      const known = Object.keys(declared);
      throw new Error(
        `device ${def.name} has no option "${key}"` +
          (known.length ? ` (it has: ${known.join(", ")})` : " (it takes no options)"),
      );
    }
    out[key] = value;
  }
  return out;
}
