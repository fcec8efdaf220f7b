// The package as a device author gets it: `npm pack`, installed from the tarball into a fresh
// project outside the repository (the native addon is built there by the install script), then
// used the way the README says: plain `node` imports it with no loader (the protocol subpath
// without loading the addon), a strict TypeScript file type-checks against its .d.ts files with
// skipLibCheck off (with @types/node, as in any TypeScript project for Node), `vfu list` runs, `vfu serve ./counter.mjs` serves the
// plain-JavaScript example and a client in that project reads its config space, SIGTERM to npx's
// own PID stops the server, and a TypeScript device file gets a message naming tsx until tsx is
// installed in the project, then it is served too.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { repoRoot, waitFor } from "../helpers/cli-server.ts";

t.setTimeout(600_000);

const tmp = mkdtempSync(path.join(tmpdir(), "vfu-consumer-"));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const project = path.join(tmp, "my-devices");
mkdirSync(project);

// npm run by `npm test` exports its configuration as npm_* variables; the project's npm must
// read its own.
const env: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith("npm_")),
);

function run(cmd: string, args: string[], cwd: string) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: "utf8", timeout: 300_000 });
  return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "", error: r.error };
}

/** Like run, without waiting: the type check runs while the other steps go on. */
function start(cmd: string, args: string[], cwd: string): Promise<{ status: number | null; output: string }> {
  const child = spawn(cmd, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (d) => {
    output += d;
  });
  child.stderr!.on("data", (d) => {
    output += d;
  });
  return new Promise((resolve) => child.on("close", (status) => resolve({ status, output })));
}

const tsc = path.join(repoRoot, "node_modules", "typescript", "bin", "tsc");
let typeCheck: Promise<{ status: number | null; output: string }> | null = null;

t.test("npm pack ships the compiled package and nothing else", async (t) => {
  const r = run("npm", ["pack", "--pack-destination", tmp, "--no-audit", "--no-fund"], repoRoot);
  t.equal(r.status, 0, "npm pack", { stderr: r.stderr });
  const tarball = readdirSync(tmp).find((f) => f.endsWith(".tgz"));
  t.ok(tarball, "a tarball");
  const list = run("tar", ["tzf", path.join(tmp, tarball!)], tmp)
    .stdout.split("\n")
    .filter(Boolean);
  const files = list.map((f) => f.replace(/^package\//, ""));
  for (const f of [
    "package.json",
    "README.md",
    "LICENSE",
    "bin/vfu.js",
    "binding.gyp",
    "native/addon.cc",
    "scripts/build-native.mjs",
    "dist/src/index.js",
    "dist/src/index.d.ts",
    "dist/protocol/index.js",
    "dist/src/client/index.js",
    "dist/cli/main.js",
    "dist/devices/index.js",
  ]) {
    t.ok(files.includes(f), `ships ${f}`);
  }
  t.same(
    files.filter(
      (f) => f.startsWith("test/") || f.includes(".test.") || (f.endsWith(".ts") && !f.endsWith(".d.ts")),
    ),
    [],
    "no tests and no TypeScript sources",
  );
  writeFileSync(
    path.join(project, "package.json"),
    `${JSON.stringify({ name: "my-devices", private: true, type: "module" }, null, 2)}\n`,
  );
  const install = run(
    "npm",
    ["install", path.join(tmp, tarball!), "@types/node@^20", "--prefer-offline", "--no-audit", "--no-fund"],
    project,
  );
  t.equal(install.status, 0, "npm install", { stderr: install.stderr });
  t.ok(
    existsSync(path.join(project, "node_modules/vfio-user-node/build/Release/vfu_native.node")),
    "the install script built the addon in the project",
  );
});

t.test("a strict TypeScript consumer: the check starts (its result is awaited last)", async (t) => {
  writeFileSync(
    path.join(project, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        module: "nodenext",
        moduleResolution: "nodenext",
        strict: true,
        skipLibCheck: false,
        noEmit: true,
        types: ["node"],
        lib: ["ES2023"],
      },
      include: ["consumer.ts"],
    }),
  );
  writeFileSync(
    path.join(project, "consumer.ts"),
    `import {
  type DeviceDefinition,
  definePciDevice,
  leValue,
  type PciDeviceBehaviour,
  type ServedDevice,
  serve,
} from "vfio-user-node";
import { VfioUserClient } from "vfio-user-node/client";
import { Command, describeMessageBytes, PciRegion } from "vfio-user-node/protocol";

const counter: DeviceDefinition = definePciDevice({
  name: "counter",
  summary: "a counter",
  ids: { vendor: 0x1234, device: 0x0c01, subsystemVendor: 0x1234, subsystem: 0, classCode: 0xff0000, revision: 1 },
  bars: [{ index: 0, kind: "memory", size: 0x1000, accessSizes: [4] }],
  options: { limit: { kind: "integer", min: 1, max: 100, default: 10, description: "limit" } },
  create(ctx) {
    let count = 0;
    const behaviour: PciDeviceBehaviour = {
      bars: {
        0: {
          read: (offset: number): number => (offset === 0 ? count : ctx.options.limit),
          write: (_offset: number, data: Uint8Array): void => {
            count += leValue(data);
          },
        },
      },
    };
    return behaviour;
  },
});

export async function main(socket: string): Promise<number> {
  const served: ServedDevice = serve(counter, { socket, options: { limit: "3" } });
  const client: VfioUserClient = await VfioUserClient.connect(socket);
  const id: number = await client.regionRead32(PciRegion.CONFIG, 0);
  const line: string = describeMessageBytes(new Uint8Array(16));
  client.close();
  await served.close();
  return id + line.length + Command.VERSION;
}
`,
  );
  typeCheck = start(process.execPath, [tsc, "-p", project], project);
  t.pass("tsc -p started");
});

t.test("plain node imports the root, ./protocol (without the addon), ./client and ./devices", async (t) => {
  writeFileSync(
    path.join(project, "imports.mjs"),
    `import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const addons = () => Object.keys(require.cache).filter((k) => k.endsWith(".node")).length;
const out = {};
const protocol = await import("vfio-user-node/protocol");
out.protocol = typeof protocol.describeMessage;
out.addonsAfterProtocol = addons();
const client = await import("vfio-user-node/client");
out.client = typeof client.VfioUserClient;
out.addonsAfterClient = addons();
const root = await import("vfio-user-node");
out.root = [typeof root.definePciDevice, typeof root.serve, typeof root.VfioUserClient];
out.sameClient = root.VfioUserClient === client.VfioUserClient;
const devices = await import("vfio-user-node/devices");
out.devices = devices.deviceModels.map((d) => d.name);
console.log(JSON.stringify(out));
`,
  );
  const r = run(process.execPath, ["imports.mjs"], project);
  t.equal(r.status, 0, "node imports.mjs", { stderr: r.stderr });
  const out = JSON.parse(r.stdout);
  t.same(out, {
    protocol: "function",
    addonsAfterProtocol: 0,
    client: "function",
    addonsAfterClient: 1,
    root: ["function", "function", "function"],
    sameClient: true,
    devices: out.devices,
  });
  t.ok(out.devices.includes("pci-testdev"), "the built-in models");
});

t.test("vfu list runs from the project", async (t) => {
  const r = run("npx", ["vfu", "list"], project);
  t.equal(r.status, 0, "npx vfu list", { stderr: r.stderr });
  t.match(r.stdout, /^pci-testdev\s+pci\s+/m);
});

async function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  return new Promise((resolve) => child.on("exit", (code) => resolve(code)));
}

t.test("vfu serve ./counter.mjs: a client in the project reads its config space", async (t) => {
  copyFileSync(path.join(repoRoot, "examples", "counter.mjs"), path.join(project, "counter.mjs"));
  writeFileSync(
    path.join(project, "read-config.mjs"),
    `import { VfioUserClient } from "vfio-user-node/client";
import { PciRegion } from "vfio-user-node/protocol";
const client = await VfioUserClient.connect(process.argv[2]);
const id = await client.regionRead32(PciRegion.CONFIG, 0);
const reg8 = await client.regionRead32(PciRegion.BAR0, 8);
client.close();
console.log(JSON.stringify({ vendor: id & 0xffff, device: id >>> 16, reg8 }));
`,
  );
  const socket = path.join(tmp, "counter.sock");
  const vfu = path.join(project, "node_modules", ".bin", "vfu");
  const server = spawn(vfu, ["serve", "./counter.mjs", "--socket", socket, "--set", "limit=7"], {
    cwd: project,
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  server.stderr!.on("data", (d) => {
    log += d;
  });
  t.teardown(() => server.kill("SIGKILL"));
  await waitFor(() => existsSync(socket) || server.exitCode !== null, 60_000, "the socket");
  const r = run(process.execPath, ["read-config.mjs", socket], project);
  t.equal(r.status, 0, "node read-config.mjs", { stderr: r.stderr, log });
  t.same(JSON.parse(r.stdout), { vendor: 0x1234, device: 0x0c01, reg8: 7 });
  server.kill("SIGTERM");
  t.equal(await exitOf(server), 0, "SIGTERM stops it");
  t.notOk(existsSync(socket), "and removes its socket");
});

t.test("SIGTERM to npx's own PID stops the server npx started", async (t) => {
  const socket = path.join(tmp, "npx.sock");
  const npx = spawn("npx", ["vfu", "serve", "./counter.mjs", "--socket", socket], {
    cwd: project,
    env,
    stdio: "ignore",
  });
  t.teardown(() => npx.kill("SIGKILL"));
  await waitFor(() => existsSync(socket) || npx.exitCode !== null, 60_000, "the socket");
  npx.kill("SIGTERM");
  await exitOf(npx);
  await waitFor(() => !existsSync(socket), 10_000, "the server to stop and remove its socket");
  t.pass("stopped");
});

t.test("a TypeScript device file without tsx in the project: a message naming what to install", async (t) => {
  copyFileSync(path.join(repoRoot, "examples", "ticker.ts"), path.join(project, "ticker.ts"));
  const r = run(
    path.join(project, "node_modules", ".bin", "vfu"),
    ["serve", "./ticker.ts", "--socket", path.join(tmp, "ticker.sock")],
    project,
  );
  t.equal(r.status, 2);
  t.match(
    r.stderr,
    /vfu: \.\/ticker\.ts is TypeScript, .*install tsx in your project \("npm install --save-dev tsx"\)/,
  );
});

t.test(
  "with tsx installed in the project, vfu serve ./ticker.ts serves the TypeScript example",
  async (t) => {
    const install = run(
      "npm",
      ["install", "--save-dev", "tsx@^4", "--prefer-offline", "--no-audit", "--no-fund"],
      project,
    );
    t.equal(install.status, 0, "npm install tsx", { stderr: install.stderr });
    const socket = path.join(tmp, "ticker.sock");
    const server = spawn(
      path.join(project, "node_modules", ".bin", "vfu"),
      ["serve", "./ticker.ts", "--socket", socket],
      {
        cwd: project,
        env,
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    let log = "";
    server.stderr!.on("data", (d) => {
      log += d;
    });
    t.teardown(() => server.kill("SIGKILL"));
    await waitFor(() => existsSync(socket) || server.exitCode !== null, 60_000, "the socket");
    const r = run(process.execPath, ["read-config.mjs", socket], project);
    t.equal(r.status, 0, "node read-config.mjs", { stderr: r.stderr, log });
    t.same(JSON.parse(r.stdout), { vendor: 0x1234, device: 0x0c02, reg8: 0 });
    server.kill("SIGTERM");
    t.equal(await exitOf(server), 0);
  },
);

t.test("the strict TypeScript consumer type-checks against the .d.ts files", async (t) => {
  const r = await typeCheck!;
  t.equal(r.status, 0, "tsc -p (strict, skipLibCheck false)", { output: r.output });
});
