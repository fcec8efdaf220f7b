// Device definitions from the command line: a built-in model by name (devices/index.ts) or a
// module file of the user's (`vfu serve ./my-device.mjs`) whose default export is a definition.
//
// TypeScript files (.ts, .mts, .cts) need a loader on Node 20. When this CLI runs from its own
// sources a loader is already active (these very files are .ts). Otherwise tsx's loader is
// registered in this process, found beside this package (the user's project) or from the device
// file's folder; without tsx the error says what to install.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { deviceModels, findDeviceModel } from "../devices/index.ts";
import type { DeviceDefinition } from "../src/index.ts";

const TYPESCRIPT = /\.[cm]?ts$/;

/** Whether a `serve` argument names a file rather than a built-in model: built-in names are
 * kebab-case words, so a slash or a JavaScript/TypeScript extension means a file. */
export function isDeviceFile(arg: string): boolean {
  return arg.includes("/") || /\.[cm]?[jt]s$/.test(arg);
}

export class DeviceLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DeviceLoadError";
  }
}

/** A built-in model by name, or the default export of the module file `arg` (relative to `cwd`).
 * Throws DeviceLoadError with a message for the user. */
export async function loadDevice(arg: string, cwd = process.cwd()): Promise<DeviceDefinition> {
  if (!isDeviceFile(arg)) {
    const def = findDeviceModel(arg);
    if (!def) {
      throw new DeviceLoadError(
        `unknown device "${arg}" (available: ${deviceModels.map((d) => d.name).join(", ")}; ` +
          "or give a file: ./my-device.mjs)",
      );
    }
    return def;
  }
  const file = path.resolve(cwd, arg);
  if (!existsSync(file)) throw new DeviceLoadError(`${arg}: no such file`);
  if (TYPESCRIPT.test(file)) await registerTypeScript(arg, file);
  let mod: { default?: unknown };
  try {
    mod = await import(pathToFileURL(file).href);
  } catch (err) {
    throw new DeviceLoadError(`${arg}: cannot load it: ${(err as Error).message}`);
  }
  const def = mod.default;
  if (!isDefinition(def)) {
    throw new DeviceLoadError(
      `${arg}: its default export is not a device definition ` +
        "(export default definePciDevice({ ... }), definePlatformDevice or defineDevice)",
    );
  }
  return def;
}

function isDefinition(v: unknown): v is DeviceDefinition {
  if (typeof v !== "object" || v === null) return false;
  const d = v as Partial<DeviceDefinition>;
  return (
    typeof d.name === "string" &&
    (d.bus === "pci" || d.bus === "platform") &&
    Array.isArray(d.regions) &&
    typeof d.instantiate === "function"
  );
}

let typeScriptReady = import.meta.url.endsWith(".ts");

type TsxApi = { register(): unknown };

/** tsx's ESM API: from this package's own place first (a project that installs both resolves the
 * project's tsx from there), then from the device file's folder (vfu installed elsewhere), by
 * the ESM entry its package.json exports. */
async function findTsx(file: string): Promise<TsxApi | null> {
  try {
    return (await import("tsx/esm/api")) as TsxApi;
  } catch {}
  try {
    const require = createRequire(file);
    const pkgPath = require.resolve("tsx/package.json");
    const pkg = JSON.parse(readFileSync(pkgPath, "utf8")) as {
      exports?: Record<string, { import?: string | { default?: string } }>;
    };
    const entry = pkg.exports?.["./esm/api"]?.import;
    const rel = typeof entry === "string" ? entry : entry?.default;
    if (!rel) return null;
    return (await import(pathToFileURL(path.join(path.dirname(pkgPath), rel)).href)) as TsxApi;
  } catch {
    return null;
  }
}

async function registerTypeScript(arg: string, file: string): Promise<void> {
  if (typeScriptReady) return;
  const tsx = await findTsx(file);
  if (!tsx) {
    throw new DeviceLoadError(
      `${arg} is TypeScript, which Node runs through a loader: install tsx in your project ` +
        '("npm install --save-dev tsx") or compile the device to JavaScript (.mjs)',
    );
  }
  tsx.register();
  typeScriptReady = true;
}
