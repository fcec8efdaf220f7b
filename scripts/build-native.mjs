#!/usr/bin/env node
// Builds the native addon (native/addon.cc) with npm's bundled node-gyp.
// node-gyp would otherwise download Node's headers: --nodedir is derived from the running node
// (its executable lives in <prefix>/bin, its headers in <prefix>/include/node), so the build needs
// no network and no ~/.npmrc.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const output = path.join(root, "build", "Release", "vfu_native.node");
const force = process.argv.includes("--force");
if (!force && existsSync(output)) {
  process.exit(0);
}

const nodedir = path.resolve(path.dirname(process.execPath), "..");
if (!existsSync(path.join(nodedir, "include", "node", "node_api.h"))) {
  console.error(`build-native: Node's headers are not under ${nodedir}/include/node; cannot build the addon`);
  process.exit(1);
}

function findNodeGyp() {
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  // npm's bundled node-gyp lives beside npm itself.
  const npmCli = process.env.npm_execpath;
  if (npmCli)
    candidates.push(path.join(path.dirname(npmCli), "..", "node_modules", "node-gyp", "bin", "node-gyp.js"));
  candidates.push(
    path.join(nodedir, "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
  );
  try {
    const require = createRequire(import.meta.url);
    candidates.push(require.resolve("node-gyp/bin/node-gyp.js"));
  } catch {}
  return candidates.find((c) => existsSync(c));
}

const gyp = findNodeGyp();
if (!gyp) {
  console.error(
    "build-native: npm's bundled node-gyp was not found (looked beside npm and under the node prefix)",
  );
  process.exit(1);
}
const result = spawnSync(process.execPath, [gyp, "rebuild", `--nodedir=${nodedir}`, "--jobs=max"], {
  cwd: root,
  stdio: "inherit",
  env: { ...process.env, npm_config_nodedir: nodedir },
});
process.exit(result.status ?? 1);
