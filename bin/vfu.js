#!/usr/bin/env node
// The `vfu` command. Installed from the package, it runs the compiled CLI (dist/cli/main.js); in a
// checkout of the repository (cli/main.ts beside this folder) it runs the sources through tsx's
// loader. Either way the CLI runs in this very process, so a signal sent to its PID reaches the
// server.
import { existsSync } from "node:fs";

const sources = new URL("../cli/main.ts", import.meta.url);
if (existsSync(sources)) {
  const { register } = await import("tsx/esm/api");
  register();
  await import(sources.href);
} else {
  await import("../dist/cli/main.js");
}
