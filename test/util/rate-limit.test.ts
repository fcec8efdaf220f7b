// RateLimiter: `burst` lines per key per window, the rest counted and reported with the key's
// next allowed line or by drain().
import t from "tap";
import { Limits } from "../../src/server/limits.ts";
import { RateLimiter } from "../../src/util/rate-limit.ts";

t.test("the burst passes, one more is suppressed, a new window passes again with the count", async (t) => {
  let now = 0;
  const r = new RateLimiter(Limits.refusedLogBurst, Limits.refusedLogWindowMs, () => now);
  for (let i = 0; i < Limits.refusedLogBurst; i++) t.same(r.take("a"), { allowed: true, suppressed: 0 });
  t.same(r.take("a"), { allowed: false, suppressed: 0 }, "one over the burst");
  t.same(r.take("b"), { allowed: true, suppressed: 0 }, "another key has its own burst");
  t.same(r.take("a"), { allowed: false, suppressed: 0 });
  now = Limits.refusedLogWindowMs - 1;
  t.same(r.take("a"), { allowed: false, suppressed: 0 }, "still the same window");
  now = Limits.refusedLogWindowMs;
  t.same(r.take("a"), { allowed: true, suppressed: 3 }, "the next window: allowed, with what was held back");
  t.same(r.take("a"), { allowed: true, suppressed: 0 }, "counted once");
});

t.test("drain hands over what was never reported, with the last line, and forgets", async (t) => {
  const r = new RateLimiter(1, 1000, () => 0);
  r.take("k", "first");
  r.take("k", "second");
  r.take("k", "third");
  r.take("other", "only");
  t.same(r.drain(), [{ count: 2, last: "third" }]);
  t.same(r.drain(), []);
  t.same(r.take("k"), { allowed: true, suppressed: 0 }, "a drained key starts over");
});
