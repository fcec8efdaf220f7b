#!/usr/bin/env node
// The `vfu` command. Installed from the package, it runs the compiled CLI (dist/cli/main.js). In a
// checkout of the repository (cli/main.ts beside this folder, also when a project installs the
// checkout by its path) it runs the sources through tsx's loader, and imports of the package by
// name (a device file's `import ... from "vfio-user-node"`) resolve to the same sources through
// the "vfio-user-node-source" condition of package.json's exports, so there is one copy of the
// framework in the process. Either way the CLI runs in this very process, so a signal sent to its
// PID reaches the server.
import { existsSync } from "node:fs";
import { register } from "node:module";

const sources = new URL("../cli/main.ts", import.meta.url);
if (existsSync(sources)) {
  const tsx = await import("tsx/esm/api");
  tsx.register();
  register(
    "data:text/javascript,export function resolve(specifier, context, next) {" +
      " return next(specifier, { ...context, conditions: [...context.conditions, 'vfio-user-node-source'] }); }",
  );
  await import(sources.href);
} else {
  await import("../dist/cli/main.js");
}
