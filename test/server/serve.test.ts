// serve(definition, { socket, options }): the one call an embedding program makes.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { pl061 } from "../../devices/pl061/index.ts";
import { serve, VfioUserClient } from "../../src/index.ts";

function dir(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(path.join(tmpdir(), "vfu-serve-"));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

t.test("serves the device with its options on the socket; close removes the socket", async (t) => {
  const socket = path.join(dir(t), "gpio.sock");
  const served = serve(pl061, { socket, options: { inputs: "0x05" } });
  t.equal(served.socketPath, socket);
  t.equal(served.device.name, "pl061");
  const c = await VfioUserClient.connect(socket);
  t.equal(await c.regionRead32(0, 0x3fc), 0x05, "the option reached the device");
  c.close();
  await served.close();
  t.notOk(existsSync(socket), "the socket file is removed");
  await served.close(); // a second close is harmless
});

t.test("defaults fill in when no options are given", async (t) => {
  const socket = path.join(dir(t), "gpio.sock");
  const served = serve(pl061, { socket });
  const c = await VfioUserClient.connect(socket);
  t.equal(await c.regionRead32(0, 0x3fc), 0, "inputs default to 0");
  c.close();
  await served.close();
});

t.test("an unknown option throws before anything listens", async (t) => {
  const socket = path.join(dir(t), "gpio.sock");
  t.throws(() => serve(pl061, { socket, options: { pins: "1" } }), /device pl061 has no option "pins"/);
  t.notOk(existsSync(socket), "no socket was created");
});

t.test("a socket path in use is refused with a message naming it", async (t) => {
  const socket = path.join(dir(t), "gpio.sock");
  const first = serve(pl061, { socket });
  t.teardown(() => first.close());
  t.throws(() => serve(pl061, { socket }), /in use by a running server/);
});
