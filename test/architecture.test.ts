// The import rules, enforced: what each part of the tree may import. From the bottom up:
// protocol/ (the pure codec), src/ (the framework, whose public entry is src/index.ts), devices/
// (models written against that entry), cli/ (the `vfu` application, on top of both).
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { Errno } from "../protocol/index.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(path.join(root, dir))) {
    const rel = path.join(dir, name);
    if (statSync(path.join(root, rel)).isDirectory()) out.push(...tsFiles(rel));
    else if (name.endsWith(".ts")) out.push(rel);
  }
  return out;
}

/** Every module specifier a file imports or re-exports, resolved to a repo-relative path for
 * relative specifiers ("node:fs" and package names stay as written). */
function imports(file: string): string[] {
  const text = readFileSync(path.join(root, file), "utf8");
  const specs = [...text.matchAll(/^\s*(?:import|export)\b[^;]*?\sfrom\s+["']([^"']+)["']/gms)].map(
    (m) => m[1]!,
  );
  specs.push(...[...text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]!));
  return specs.map((s) => (s.startsWith(".") ? path.normalize(path.join(path.dirname(file), s)) : s));
}

function violations(files: string[], allowed: (spec: string, file: string) => boolean): string[] {
  const bad: string[] = [];
  for (const f of files) for (const s of imports(f)) if (!allowed(s, f)) bad.push(`${f} imports ${s}`);
  return bad;
}

const under = (spec: string, dir: string) => spec === dir || spec.startsWith(`${dir}/`);
const REPO_DIRS = ["src", "native", "protocol", "devices", "cli", "examples", "scripts", "test", "bin"];
const NATIVE_USERS = ["src/transport", "src/iommu", "src/device", "src/client", "src/util"];

t.test(
  "protocol/ is a pure codec: it imports nothing outside protocol/, not even node: modules",
  async (t) => {
    t.same(
      violations(tsFiles("protocol"), (s) => under(s, "protocol")),
      [],
    );
  },
);

t.test(
  "devices/ import only the public entry (src/index.ts), their own folder and Node built-ins",
  async (t) => {
    const bad = violations(tsFiles("devices"), (s, f) => {
      if (s === "src/index.ts" || s.startsWith("node:")) return true;
      if (REPO_DIRS.some((d) => under(s, d))) {
        if (!under(s, "devices")) return false;
        // The registry (devices/index.ts) may import each model; a model only its own folder.
        const folder = path.dirname(f);
        return folder === "devices" || under(s, folder);
      }
      return true; // an npm package
    });
    t.same(bad, []);
  },
);

t.test(
  "only the transport, the IOMMU, the device layer (eventfds, region memory), the client and fd helpers reach the addon",
  async (t) => {
    const files = tsFiles("src").filter((f) => f !== "src/index.ts");
    const bad = violations(files, (s, f) => !under(s, "native") || NATIVE_USERS.some((d) => under(f, d)));
    t.same(bad, []);
  },
);

t.test("the layers point one way", async (t) => {
  const rules: [string, string[]][] = [
    // [folder, folders of src/ it must not import]
    ["src/transport", ["src/server", "src/client", "src/device", "src/pci", "src/platform", "src/iommu"]],
    ["src/device", ["src/server", "src/client", "src/transport", "src/pci", "src/platform"]],
    ["src/pci", ["src/server", "src/client", "src/transport", "src/platform"]],
    ["src/platform", ["src/server", "src/client", "src/transport", "src/pci"]],
    ["src/iommu", ["src/server", "src/client", "src/transport", "src/pci", "src/platform"]],
    ["src/server", ["src/client", "src/pci", "src/platform"]],
    ["src/client", ["src/server", "src/device", "src/pci", "src/iommu"]],
    [
      "src/util",
      ["src/server", "src/client", "src/transport", "src/device", "src/pci", "src/platform", "src/iommu"],
    ],
  ];
  const bad: string[] = [];
  for (const [dir, banned] of rules) {
    bad.push(...violations(tsFiles(dir), (s) => !banned.some((b) => under(s, b))));
  }
  // The framework knows neither the device models nor the application built on it.
  bad.push(...violations(tsFiles("src"), (s) => !under(s, "devices") && !under(s, "cli")));
  // Device models never reach up into the application.
  bad.push(...violations(tsFiles("devices"), (s) => !under(s, "cli")));
  t.same(bad, []);
});

t.test(
  "cli/ is an application of the public API: it imports src/index.ts, the device registry, its own folder, Node built-ins and packages",
  async (t) => {
    const bad = violations(tsFiles("cli"), (s) => {
      if (s === "src/index.ts" || s === "devices/index.ts" || s.startsWith("node:")) return true;
      if (REPO_DIRS.some((d) => under(s, d))) return under(s, "cli");
      return true; // an npm package
    });
    t.same(bad, []);
  },
);

t.test("errnos come from one table: protocol/constants.ts's Errno", async (t) => {
  // A file that names an errno by number (`const EINVAL = 22`, `new VfuError(5, ...)`) would keep
  // its own copy of the table; every errno is written `Errno.X` instead.
  const files = ["src", "protocol", "devices", "scripts", "test"].flatMap((d) => tsFiles(d));
  const bad: string[] = [];
  for (const f of files) {
    if (f === "protocol/constants.ts" || f === "test/architecture.test.ts") continue;
    const text = readFileSync(path.join(root, f), "utf8");
    for (const m of text.matchAll(/\bconst (E[A-Z0-9]{2,}) = \d+/g))
      if (m[1]! in Errno) bad.push(`${f} defines ${m[1]}`);
    for (const m of text.matchAll(/new (?:VfuError|ProtocolError|FramingError|ClientError)\(\s*\d+/g))
      bad.push(`${f}: ${m[0]}`);
  }
  t.same(bad, []);
});

t.test("U64_MAX is defined once, in protocol/constants.ts", async (t) => {
  const files = ["src", "protocol", "devices", "scripts", "test"].flatMap((d) => tsFiles(d));
  const bad = files.filter(
    (f) =>
      f !== "protocol/constants.ts" && /\bconst U64_MAX\s*=/.test(readFileSync(path.join(root, f), "utf8")),
  );
  t.same(bad, []);
});

t.test("the PCI register tables are defined once, in protocol/pci-config.ts", async (t) => {
  // The device side (src/pci) and the client both read and write config space by them.
  const tables = [
    "PciHeader",
    "PciCommand",
    "PciStatus",
    "BarBits",
    "MsiCap",
    "MsiControl",
    "MsixCap",
    "MsixControl",
    "MsixEntry",
  ];
  const files = ["src", "protocol", "devices", "scripts", "test"].flatMap((d) => tsFiles(d));
  const bad: string[] = [];
  for (const f of files) {
    if (f === "protocol/pci-config.ts") continue;
    const text = readFileSync(path.join(root, f), "utf8");
    for (const name of tables)
      if (new RegExp(`\\bconst ${name}\\s*=`).test(text)) bad.push(`${f} defines ${name}`);
  }
  t.same(bad, []);
});

t.test("device models reach their behaviour and options through the framework", async (t) => {
  // A served device's behaviour is `device.behaviour`, typed by its definition: no model keeps a
  // registry of behaviours (a WeakMap and an `xOf(device)` accessor). Sizes have one grammar, the
  // framework's `parseSize`; no model keeps its own.
  const bad: string[] = [];
  for (const f of tsFiles("devices")) {
    const text = readFileSync(path.join(root, f), "utf8");
    if (/\bnew WeakMap\b/.test(text)) bad.push(`${f}: a WeakMap registry`);
    if (/\bfunction parseSize\b/.test(text)) bad.push(`${f}: its own parseSize`);
  }
  // The bus layers reach the DMA gate through their BusHooks, never by casting the model's port.
  for (const f of [...tsFiles("src/pci"), ...tsFiles("src/platform")]) {
    if (/\bdma\s+as\b/.test(readFileSync(path.join(root, f), "utf8"))) bad.push(`${f}: casts ctx.dma`);
  }
  t.same(bad, []);
});
