// `vfu`: the command line. See args.ts for the grammar and the help texts.
import { deviceModels, findDeviceModel } from "../devices/index.ts";
import {
  Device,
  describeDevice,
  formatDescriptionJson,
  formatOptions,
  type OptionValues,
  renderDts,
  resolveOptions,
  Server,
  stderrLogger,
} from "../src/index.ts";
import { DESCRIBE_HELP, LIST_HELP, MAIN_HELP, parseArgs, SERVE_HELP, UsageError } from "./args.ts";

function fail(message: string): never {
  process.stderr.write(`vfu: ${message}\n`);
  process.exit(2);
}

async function main(argv: string[]): Promise<void> {
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
    const def = findDeviceModel(cmd.device);
    if (!def)
      fail(`unknown device "${cmd.device}" (available: ${deviceModels.map((d) => d.name).join(", ")})`);
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
  const log = stderrLogger(cmd.verbose ? "debug" : "info");
  const server = new Server({ log });
  // Check every target before listening on any socket.
  const plans = cmd.targets.map((t) => {
    const def = findDeviceModel(t.device);
    if (!def) fail(`unknown device "${t.device}" (available: ${deviceModels.map((d) => d.name).join(", ")})`);
    let options: OptionValues;
    try {
      options = resolveOptions(def, t.set);
    } catch (err) {
      fail((err as Error).message);
    }
    return { t, def, options };
  });
  for (const { t, def, options } of plans) {
    try {
      server.listen((dma, devLog) => new Device(def, { dma, log: devLog, options }), {
        socketPath: t.socket,
        mode: t.mode,
        dmaLayout: t.dmaLayout,
        writeMultiple: t.writeMultiple,
        mmap: t.mmap,
        allowUnsealedDmaFds: t.allowUnsealedDmaFds,
        verbose: cmd.verbose,
        log: log.child(`[${def.name}]`),
      });
    } catch (err) {
      await server.close();
      fail(`cannot serve ${def.name} on ${t.socket}: ${(err as Error).message}`);
    }
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: stopping`);
    void server.close().then(() => process.exit(0));
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

await main(process.argv.slice(2));
