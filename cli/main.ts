// `vfu`: the command line. See args.ts for the grammar and the help texts, load-device.ts for how
// a device is found by name or loaded from a file.
//
// `vfu serve` is the server process itself: SIGINT, SIGTERM and SIGHUP stop it, every socket
// file is removed, and it exits 0; a second SIGINT while it stops exits at once (the socket files
// are gone by then). Started by npm (`npx vfu`, an npm script), it also stops when its parent
// exits: npm hands a signal to the shell it runs commands in, and the shell dies of it without
// passing it on. A closed stdout ends a listing quietly (`vfu list | head -1`); a closed stderr
// silences the log and the server goes on.
import { deviceModels } from "../devices/index.ts";
import {
  type DeviceDefinition,
  describeDevice,
  formatDescriptionJson,
  formatOptions,
  renderDts,
  resolveOptions,
  type ServedDevice,
  serve,
  signalOnParentExit,
  stderrLogger,
} from "../src/index.ts";
import { DESCRIBE_HELP, LIST_HELP, MAIN_HELP, parseArgs, SERVE_HELP, UsageError } from "./args.ts";
import { DeviceLoadError, loadDevice } from "./load-device.ts";

/** The parent this process started with: if it is gone before the parent-death signal is set,
 * the signal is due at once. */
const startingParent = process.ppid;

function fail(message: string): never {
  process.stderr.write(`vfu: ${message}\n`);
  process.exit(2);
}

function guardStdio(): void {
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    // The reader went away (`vfu list | head -1`): nothing more is wanted.
    if (err.code === "EPIPE") process.exit(0);
    throw err;
  });
  // A closed stderr only silences the log: the server must not stop for it.
  process.stderr.on("error", () => {});
}

async function main(argv: string[]): Promise<void> {
  guardStdio();
  let cmd: ReturnType<typeof parseArgs>;
  try {
    cmd = parseArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) fail(err.message);
    throw err;
  }
  if (cmd.kind === "help") {
    const help = { main: MAIN_HELP, serve: SERVE_HELP, list: LIST_HELP, describe: DESCRIBE_HELP };
    process.stdout.write(help[cmd.topic]);
    return;
  }
  if (cmd.kind === "describe") {
    const def = await loadOrFail(cmd.device);
    let description: ReturnType<typeof describeDevice>;
    try {
      description = describeDevice(def);
    } catch (err) {
      fail((err as Error).message);
    }
    process.stdout.write(cmd.json ? formatDescriptionJson(description) : renderDts(description));
    return;
  }
  if (cmd.kind === "list") {
    const width = Math.max(...deviceModels.map((d) => d.name.length));
    for (const d of deviceModels) {
      process.stdout.write(`${d.name.padEnd(width)}  ${d.bus.padEnd(8)}  ${d.summary}\n`);
      if (cmd.options) process.stdout.write(formatOptions(d.options));
    }
    return;
  }

  const log = stderrLogger(cmd.logLevel);
  // Stop requests are taken from here on: one that comes while devices load or sockets open
  // closes whatever is served by then.
  const served: ServedDevice[] = [];
  const closeAll = () => Promise.all(served.map((s) => s.close()));
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      if (signal !== "SIGINT") return;
      log.warn("SIGINT again: exiting without waiting for the devices");
      process.exit(1);
    }
    stopping = true;
    log.info(`${signal}: stopping`);
    void closeAll().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error(`stopping failed: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => stop(signal));
  if (process.env.npm_lifecycle_event !== undefined) signalOnParentExit("SIGTERM", startingParent);

  // Every device is found and loaded, and its options checked, before any socket listens, so a
  // mistake in a later group leaves nothing behind.
  const definitions: DeviceDefinition[] = [];
  for (const t of cmd.targets) {
    const def = await loadOrFail(t.device);
    try {
      resolveOptions(def, t.set);
    } catch (err) {
      fail((err as Error).message);
    }
    definitions.push(def);
  }
  if (stopping) return;
  for (const [i, t] of cmd.targets.entries()) {
    const def = definitions[i]!;
    try {
      served.push(
        serve(def, {
          socket: t.socket,
          options: t.set,
          mode: t.mode,
          dmaLayout: t.dmaLayout,
          writeMultiple: t.writeMultiple,
          mmap: t.mmap,
          allowUnsealedDmaFds: t.allowUnsealedDmaFds,
          verbose: cmd.verbose,
          log: log.child(`[${def.name}]`),
        }),
      );
    } catch (err) {
      await closeAll();
      fail(`cannot serve ${def.name} on ${t.socket}: ${(err as Error).message}`);
    }
  }
}

async function loadOrFail(device: string): Promise<DeviceDefinition> {
  try {
    return await loadDevice(device);
  } catch (err) {
    if (err instanceof DeviceLoadError) fail(err.message);
    throw err;
  }
}

await main(process.argv.slice(2));
