// The README's walkthrough under a real guest: `vfu serve examples/counter.mjs` (a device file
// importing the package by name) as its own process, QEMU attaching it, and the guest reading
// and writing its registers with the commands the README shows.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { bootGuest, buildInitramfs, setupChroot } from "../../../scripts/qemu/boot.mjs";
import { startCliServer, waitFor } from "../../helpers/cli-server.ts";

const here = path.dirname(fileURLToPath(import.meta.url));

if (process.env.VFU_SKIP_QEMU === "1") {
  t.skip("QEMU end-to-end tests: skipped because VFU_SKIP_QEMU=1", () => {});
} else {
  const work = mkdtempSync(path.join(tmpdir(), "vfu-e2e-example-"));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));

  t.test("examples/counter.mjs served by vfu, driven by a Linux guest through /dev/mem", async (t) => {
    const chroot = await setupChroot({ quiet: true });
    const { initramfs } = buildInitramfs({
      chroot,
      out: path.join(work, "counter.cpio.gz"),
      init: path.join(here, "guest", "counter-example.sh"),
    });
    const srv = await startCliServer(t, "examples/counter.mjs");
    const r = await bootGuest({ chroot, initramfs, sockets: [srv.socketPath], timeoutMs: 120_000 });
    t.equal(r.ended, true, "VFU-END seen", {
      consoleTail: r.lines.slice(-20).join("\n"),
      qemuStderr: r.stderr,
    });
    t.match(r.results.found, /^\/sys\/bus\/pci\/devices\/0000:/, "the guest finds 1234:0c01");
    t.equal(r.results.count, "0x00000000", "COUNT starts at 0");
    t.equal(r.results.limit, "0x0000000A", "LIMIT is the default, 10");
    t.equal(r.results["count-after-add"], "0x00000005", "ADD 5");
    await waitFor(() => /client disconnected/.test(srv.stderr), 10_000, "the disconnect line");
    t.match(srv.stderr, /client connected: pid \d+ \(qemu-system-x86\), uid 0, gid 0/, "the peer is QEMU");
    t.match(srv.stderr, /client disconnected: the client closed the connection/);
    t.equal(await srv.stop(), 0);
  });
}
