// Run by dma-fds.test.ts in a child process: maps an unsealed memfd into the scratchpad's address
// space, lets the device DMA from it (so the server has it mapped), shrinks the file to nothing and
// lets the device DMA again. With the default policy the map is refused and nothing happens; with
// `allow-unsealed` the second DMA touches pages that no longer exist and the kernel sends SIGBUS.
// Prints what happened on stdout; the parent checks the exit code or the signal.
import { ftruncateSync } from "node:fs";
import { Reg, scratchpad } from "../../devices/scratchpad/index.ts";
import { native } from "../../native/index.ts";
import { createMemoryPair, Device, serveConnection, VfioUserClient } from "../../src/index.ts";

const allow = process.argv[2] === "allow-unsealed";
const SIZE = 0x10000;
const IOVA = 0x100000n;

const [a, b] = createMemoryPair();
serveConnection(b, (dma, log) => new Device(scratchpad, { dma, log }), { allowUnsealedDmaFds: allow });
const client = await VfioUserClient.over(a);
const fd = native.memfdCreate("sigbus", SIZE, false);
try {
  await client.dmaMap({ iova: IOVA, size: BigInt(SIZE), fd });
} catch (err) {
  process.stdout.write(`map refused: ${(err as { errno?: number }).errno}\n`);
  client.close();
  process.exit(0);
}
process.stdout.write("mapped\n");

/** One DMA from client memory; the status once RAISED (counting completed DMAs too) moved on. */
async function dmaIn(): Promise<number> {
  const raised = await client.regionRead32(0, Reg.RAISED);
  await client.regionWrite32(0, Reg.DMA_ADDR_LO, Number(IOVA));
  await client.regionWrite32(0, Reg.DMA_ADDR_HI, 0);
  await client.regionWrite32(0, Reg.DMA_LEN, SIZE);
  await client.regionWrite32(0, Reg.DMA_CMD, 1);
  while ((await client.regionRead32(0, Reg.RAISED)) === raised) await new Promise((r) => setTimeout(r, 1));
  return client.regionRead32(0, Reg.DMA_STATUS);
}

process.stdout.write(`first DMA: ${await dmaIn()}\n`);
ftruncateSync(fd, 0);
process.stdout.write("shrunk\n");
process.stdout.write(`second DMA: ${await dmaIn()}\n`);
client.close();
