// The examples a device author starts from, each served by `vfu serve <file>` as its own process
// and driven by the client: examples/counter.mjs (plain JavaScript) and examples/ticker.ts
// (TypeScript), both importing the package by its name; then both and a built-in in one process.
import { readFileSync } from "node:fs";
import path from "node:path";
import t from "tap";
import { TickerReg } from "../../examples/ticker.ts";
import { IrqSetFlag, PciIrq, PciRegion, VfioUserClient } from "../../src/index.ts";
import { repoRoot, startCliServer } from "../helpers/cli-server.ts";

const Counter = { COUNT: 0x0, ADD: 0x4, LIMIT: 0x8, CLEAR: 0xc } as const;

t.test("examples/counter.mjs: config space, the limit option, the interrupt and CLEAR", async (t) => {
  const srv = await startCliServer(t, "examples/counter.mjs", () => ["--set", "limit=3"]);
  const c = await VfioUserClient.connect(srv.socketPath);
  t.teardown(() => c.close());
  t.equal(await c.regionRead32(PciRegion.CONFIG, 0), 0x0c01_1234, "vendor 1234, device 0c01");
  t.equal(await c.regionRead32(PciRegion.BAR0, Counter.LIMIT), 3, "--set limit=3");
  const [fd] = await c.enableInterrupts(PciIrq.INTX, 0, 1);
  await c.regionWrite32(PciRegion.BAR0, Counter.ADD, 1);
  t.equal(await c.regionRead32(PciRegion.BAR0, Counter.COUNT), 1);
  await c.regionWrite32(PciRegion.BAR0, Counter.ADD, 2);
  t.equal(await c.waitForInterrupt(fd!, 10_000), 1, "INTx when the count reaches the limit");
  t.equal(await c.regionRead32(PciRegion.BAR0, Counter.COUNT), 3);
  await c.regionWrite32(PciRegion.BAR0, Counter.CLEAR, 1);
  t.equal(await c.regionRead32(PciRegion.BAR0, Counter.COUNT), 0, "CLEAR");
  c.close();
  t.equal(await srv.stop(), 0);
});

t.test("examples/ticker.ts: ticks interrupt until STATUS is cleared; PERIOD 0 stops", async (t) => {
  const srv = await startCliServer(t, "examples/ticker.ts");
  const c = await VfioUserClient.connect(srv.socketPath);
  t.teardown(() => c.close());
  t.equal(await c.regionRead32(PciRegion.CONFIG, 0), 0x0c02_1234, "vendor 1234, device 0c02");
  const [fd] = await c.enableInterrupts(PciIrq.INTX, 0, 1);
  await c.regionWrite32(PciRegion.BAR0, TickerReg.PERIOD, 5);
  t.equal(await c.waitForInterrupt(fd!, 10_000), 1, "the first tick interrupts");
  t.equal(await c.regionRead32(PciRegion.BAR0, TickerReg.STATUS), 1, "STATUS says a tick happened");
  await c.regionWrite32(PciRegion.BAR0, TickerReg.STATUS, 1);
  // INTx masks itself when it fires (as VFIO's does): unmask it, as a guest's EOI would.
  await c.setIrqs({
    index: PciIrq.INTX,
    flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_UNMASK,
    start: 0,
    count: 1,
  });
  t.equal(await c.waitForInterrupt(fd!, 10_000), 1, "cleared and unmasked: the next tick interrupts again");
  await c.regionWrite32(PciRegion.BAR0, TickerReg.PERIOD, 0);
  const ticks = await c.regionRead32(PciRegion.BAR0, TickerReg.TICKS);
  t.equal(ticks, 0, "PERIOD 0 stops the timer and clears TICKS");
  c.close();
  t.equal(await srv.stop(), 0);
});

t.test("device files and built-in names mix in one process", async (t) => {
  const srv = await startCliServer(t, "examples/counter.mjs", (dir) => [
    "serve",
    "./examples/ticker.ts",
    "--socket",
    `${dir}/ticker.sock`,
    "serve",
    "pci-testdev",
    "--socket",
    `${dir}/testdev.sock`,
  ]);
  for (const [sock, id] of [
    [srv.socketPath, 0x0c01_1234],
    [`${srv.dir}/ticker.sock`, 0x0c02_1234],
    [`${srv.dir}/testdev.sock`, 0x5646_1234],
  ] as const) {
    const c = await VfioUserClient.connect(sock);
    t.equal(await c.regionRead32(PciRegion.CONFIG, 0), id, sock);
    c.close();
  }
  t.equal(await srv.stop(), 0);
});

t.test("the README's walkthrough shows examples/counter.mjs as it is", async (t) => {
  const readme = readFileSync(path.join(repoRoot, "README.md"), "utf8");
  const from = readme.indexOf("Write the device, `counter.mjs`");
  const block = readme.slice(
    readme.indexOf("```js\n", from) + 6,
    readme.indexOf("```\n", readme.indexOf("```js\n", from) + 6),
  );
  const example = readFileSync(path.join(repoRoot, "examples", "counter.mjs"), "utf8").replace(
    /^(\/\/.*\n)+/,
    "",
  );
  t.equal(block, example);
});
