// The fuzz run inside `npm test`: a fixed count of messages (200,000 through the in-memory pair,
// the fastest transport, plus 20,000 through real UNIX sockets with real fds) against every device
// model in devices/index.ts. Every property the engine checks must hold: no crash, no hang, no
// reply violation, no fd or mapping left behind. The seed is fixed so a failure reproduces with
// `npm run fuzz -- --seed <seed> --count <count> --transport <t>`; FUZZ_SEED overrides it.
import t, { type Test } from "tap";
import { type FuzzResult, runFuzz } from "../../scripts/fuzz/engine.ts";
import { parseSeed } from "../../scripts/fuzz/rng.ts";

const seed = parseSeed(process.env.FUZZ_SEED ?? "20261121");

t.setTimeout(300_000);

function check(tt: Test, r: FuzzResult, how: string): void {
  tt.comment(
    `${how}: ${r.executed} messages in ${r.seconds} s (${r.messagesPerSec}/s), ${r.connections} connections, ` +
      `devices ${r.devices.join(", ")}, max RSS ${r.maxRssMiB} MiB, seed ${r.seed}`,
  );
  for (const f of r.findings.slice(0, 5)) {
    tt.comment(`finding ${f.kind} (connection ${f.connection}, burst ${f.burst}, ${f.device}): ${f.detail}`);
  }
  tt.equal(r.crashes, 0, "no crash");
  tt.equal(r.hangs, 0, "no hang");
  tt.equal(r.violations, 0, "every command answered exactly once, in order, well formed");
  tt.equal(r.leakedFds, 0, "no fd left behind");
  tt.equal(r.leakedMappings, 0, "no client memory left mapped");
  tt.equal(r.findings.length, 0, "no finding at all");
}

t.test("200,000 messages through the in-memory pair", async (tt) => {
  const r = await runFuzz({ seed, count: 200_000, transports: { memory: 1 } });
  tt.ok(r.executed >= 200_000);
  tt.ok(r.devices.length >= 1, "every device model is fuzzed");
  check(tt, r, "memory");
});

t.test("20,000 messages through UNIX sockets with real fds", async (tt) => {
  const r = await runFuzz({ seed: seed ^ 1, count: 20_000, transports: { socket: 1 } });
  tt.ok(r.byTransport.socket > 0);
  check(tt, r, "socket");
});
