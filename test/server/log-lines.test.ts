// What the server logs about a client: the connect line names the peer (SO_PEERCRED), the
// disconnect line says why, a refused access is a warning with its reason (rate-limited per
// cause), and verbose sessions describe each message on one line in each direction.
import t from "tap";
import { Reg } from "../../devices/scratchpad/index.ts";
import { Command, encodeMessage, HeaderFlag, Limits, VfioUserClient } from "../../src/index.ts";
import { waitFor } from "../helpers/cli-server.ts";
import { memoryHarness, rejection, socketHarness } from "../helpers/harness.ts";

const lines = (sink: { lines: { level: string; line: string }[] }, re: RegExp) =>
  sink.lines.filter((l) => re.test(l.line));

t.test("'client connected' names the peer: pid, command, uid and gid from SO_PEERCRED", async (t) => {
  const h = await socketHarness();
  t.teardown(h.close);
  const c = await h.connect();
  const [line] = lines(h.sink, /client connected/);
  t.ok(line, "a connect line");
  t.equal(line!.level, "info");
  t.match(
    line!.line,
    new RegExp(
      `^client connected: pid ${process.pid} \\(.+\\), uid ${process.getuid!()}, gid ${process.getgid!()}$`,
    ),
  );
  c.close();
  await h.endpoint.session?.ended;
});

t.test("'client disconnected' says why", async (t) => {
  t.test("the client closed the connection (info)", async (t) => {
    const h = await socketHarness();
    t.teardown(h.close);
    const c = await h.connect();
    const s = h.endpoint.session!;
    c.close();
    await s.ended;
    const [line] = lines(h.sink, /client disconnected/);
    t.same(line, { level: "info", line: "client disconnected: the client closed the connection" });
  });

  t.test("the server is stopping (info)", async (t) => {
    const h = await socketHarness();
    const c = await h.connect();
    await h.close();
    const [line] = lines(h.sink, /client disconnected/);
    t.same(line, { level: "info", line: "client disconnected: the server is stopping" });
    c.close();
  });

  t.test("a broken stream (warning, with what broke)", async (t) => {
    const h = await socketHarness();
    t.teardown(h.close);
    const c = await h.connect();
    const s = h.endpoint.session!;
    // msg_size 8: smaller than a header, the framing is lost.
    const bad = encodeMessage({ msgId: 1, command: Command.REGION_READ, flags: HeaderFlag.COMMAND }, null);
    new DataView(bad.buffer).setUint32(4, 8, true);
    void c.sendRaw(bad, [], 1).catch(() => {});
    await s.ended;
    const [line] = lines(h.sink, /client disconnected/);
    t.equal(line?.level, "warn");
    t.match(line?.line, /^client disconnected: broken stream: .*msg_size 8/);
    c.close();
  });

  t.test("a first message other than VERSION (warning)", async (t) => {
    const h = await socketHarness();
    t.teardown(h.close);
    const c = await VfioUserClient.connect(h.socketPath, { negotiate: false });
    await rejection(c.getDeviceInfo());
    await waitFor(() => h.sink.text().includes("client disconnected"), 10_000, "the disconnect");
    const [line] = lines(h.sink, /client disconnected/);
    t.same(line, { level: "warn", line: "client disconnected: client did not start with VERSION" });
    c.close();
  });
});

t.test("a refused access is a warning with its reason, at most a burst per cause", async (t) => {
  const h = await memoryHarness();
  const over = Limits.refusedLogBurst + 3;
  for (let i = 0; i < over; i++) await rejection(h.client.regionRead32(0, 0x1000 + 4 * i));
  await rejection(h.client.regionRead(0, Reg.SCRATCH, 2)); // another cause: a width the region refuses
  const refused = lines(h.sink, /^refused /);
  t.equal(refused.length, Limits.refusedLogBurst + 1, "the burst of one cause, then the other cause");
  t.ok(
    refused.every((l) => l.level === "warn"),
    "warnings",
  );
  t.match(
    refused[0]!.line,
    /^refused REGION_READ id=\d+: EINVAL: access \[4096, \+4\) lies outside region regs/,
  );
  t.match(refused.at(-1)!.line, /^refused REGION_READ id=\d+: EINVAL: .*2/);
  await h.close();
  const summary = lines(h.sink, /more not logged/);
  t.equal(summary.length, 1, "what was held back is counted at disconnect");
  t.match(
    summary[0]!.line,
    new RegExp(
      `^3 more not logged: refused REGION_READ: EINVAL: access \\[${0x1000 + 4 * (over - 1)}, \\+4\\)`,
    ),
    "with the last one held back",
  );
  t.equal(summary[0]!.level, "warn");
});

t.test("a verbose session describes every message in both directions", async (t) => {
  const h = await memoryHarness({ server: { verbose: true } });
  await h.client.regionWrite32(0, Reg.SCRATCH, 0x2a, { posted: true });
  t.equal(await h.client.regionRead32(0, Reg.SCRATCH), 0x2a);
  const mem = await h.client.mapMessageMemory(0x10000n, 0x1000);
  mem.bytes.set([1, 2, 3, 4]);
  await h.client.regionWrite32(0, Reg.DMA_ADDR_LO, 0x10000);
  await h.client.regionWrite32(0, Reg.DMA_ADDR_HI, 0);
  await h.client.regionWrite32(0, Reg.DMA_LEN, 4);
  await h.client.regionWrite32(0, Reg.DMA_CMD, 1);
  for (let i = 0; i < 100 && (await h.client.regionRead32(0, Reg.DMA_STATUS)) !== 2; i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
  await h.client.enableInterrupts(0, 0, 1);
  await h.close();
  const text = h.sink.lines.filter((l) => l.level === "debug").map((l) => l.line);
  const has = (re: RegExp) =>
    t.ok(
      text.some((l) => re.test(l)),
      re.source,
    );
  has(/^<- VERSION id=\d+ version=0\.0 caps=\{/);
  has(/^-> VERSION reply id=\d+ version=0\.0 caps=\{/);
  has(/^<- REGION_WRITE id=\d+ no-reply region=0 offset=0x4 count=4 value=0x0000002a$/);
  has(/^<- REGION_READ id=\d+ region=0 offset=0x4 count=4$/);
  has(/^-> REGION_READ reply id=\d+ region=0 offset=0x4 count=4 value=0x0000002a$/);
  has(/^<- DMA_MAP id=\d+ iova=0x10000 size=0x1000 prot=rw offset=0x0 fd=none$/);
  has(/^=> DMA_READ id=\d+ iova=0x10000 count=4$/);
  has(/^<= DMA_READ reply id=\d+ iova=0x10000 count=4 value=0x04030201$/);
  has(/^<- DEVICE_SET_IRQS id=\d+ index=0 start=0 count=1 action=trigger data=eventfd fds=\d+$/);
  has(/^-> DEVICE_SET_IRQS reply id=\d+$/);
});
