// A DMA_UNMAP while the device's message-based DMA (DMA_READ requests to the client) is in flight
// on that area. What the server guarantees: the area leaves the lookup at once, the unmap's
// reply waits for the one request already out (never for the rest of the transfer: no further
// request goes out once the unmap is seen), the device sees a fault, and the session goes on.
// A client that never answers the request in flight holds its own unmap up to the request timeout,
// then the unmap completes: the server does not hang.
import t, { type Test } from "tap";
import { Command, encodeDmaMap, encodeDmaUnmap, Limits } from "../../src/index.ts";
import { dmaStatus, errnoOf, RawClient, startDma, startServer, waitFor } from "./helpers.ts";

const IOVA = 0x400000n;
const SIZE = 0x10000;

async function setup(t: Test) {
  const s = startServer();
  t.teardown(() => s.close());
  // 4 KiB transfers: the 64 KiB DMA needs 16 requests, one at a time.
  const c = await RawClient.connect(s.path(), { maxDataXferSize: 4096 });
  const map = encodeDmaMap({ argsz: 32, flags: 3, offset: 0n, addr: IOVA, size: BigInt(SIZE) });
  t.equal(errnoOf(await c.request(Command.DMA_MAP, map)), 0, "message-backed map");
  return { s, c };
}

const unmapBody = () => encodeDmaUnmap({ argsz: 24, flags: 0, addr: IOVA, size: BigInt(SIZE) });

t.test(
  "unmap during a message-based DMA: waits for the request out, stops the rest, faults the DMA",
  async (t) => {
    const { s, c } = await setup(t);
    const raised = await startDma(c, IOVA, SIZE, 1);
    // Answer two requests, hold the third.
    for (let i = 0; i < 2; i++) {
      await waitFor(() => c.requests.length > 0, 5000, "a DMA_READ");
      c.answer(c.requests.shift()!);
    }
    await waitFor(() => c.requests.length > 0, 5000, "the third DMA_READ");
    const held = c.requests.shift()!;
    t.equal(held.header.command, Command.DMA_READ);

    let unmapped = false;
    const unmap = c.request(Command.DMA_UNMAP, unmapBody()).then((r) => {
      unmapped = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 50));
    t.notOk(unmapped, "the unmap waits for the request in flight");
    c.answer(held);
    t.equal(errnoOf(await unmap), 0, "then the unmap completes");
    t.equal(await dmaStatus(c, raised), 3, "the device saw a fault");
    t.equal(c.requests.length, 0, "no request went out after the unmap");
    await new Promise((r) => setTimeout(r, 20));
    t.equal(c.requests.length, 0, "nor later");
    t.equal(await c.read32(0, 0), 0x56465531, "the session goes on");
    t.equal(s.endpoints[0]!.session!.space.count, 0, "the area is gone");
    c.close();
  },
);

t.test("a late answer to an abandoned request is dropped with a warning, nothing else", async (t) => {
  const { s, c } = await setup(t);
  await startDma(c, IOVA, SIZE, 1);
  await waitFor(() => c.requests.length > 0, 5000, "a DMA_READ");
  const held = c.requests.shift()!;
  const unmap = c.request(Command.DMA_UNMAP, unmapBody());
  c.answer(held);
  t.equal(errnoOf(await unmap), 0);
  c.answer(held); // a second, duplicate answer
  await new Promise((r) => setTimeout(r, 20));
  t.match(s.sink.text(), /unexpected reply/, "the duplicate is dropped with a warning");
  t.equal(await c.read32(0, 0), 0x56465531, "the session goes on");
  c.close();
});

t.test(
  "a client that never answers holds its unmap until the request timeout, then it completes",
  { timeout: Limits.requestTimeoutMs + 20_000 },
  async (t) => {
    const { c } = await setup(t);
    const raised = await startDma(c, IOVA, SIZE, 1);
    await waitFor(() => c.requests.length > 0, 5000, "a DMA_READ");
    c.requests.shift(); // never answered
    const started = Date.now();
    const r = await c.request(Command.DMA_UNMAP, unmapBody());
    const waited = Date.now() - started;
    t.equal(errnoOf(r), 0, "the unmap completes");
    t.ok(waited <= Limits.requestTimeoutMs + 2000, `bounded by the request timeout (${waited} ms)`);
    t.equal(await dmaStatus(c, raised), 3, "the device saw a fault");
    t.equal(await c.read32(0, 0), 0x56465531, "the session goes on");
    c.close();
  },
);
