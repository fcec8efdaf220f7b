// End-to-end check of the QEMU machinery itself (no vfio-user server needed): the chroot is
// there, a guest boots to its end marker and sees the q35 host bridge, the console handshake
// works, and QEMU refuses a vfio-user-pci device whose socket has no listener.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { bootGuest, buildInitramfs, setupChroot } from "../../../scripts/qemu/boot.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));

if (process.env.VFU_SKIP_QEMU === "1") {
  t.skip("QEMU end-to-end tests: skipped because VFU_SKIP_QEMU=1", () => {});
} else {
  const work = mkdtempSync(path.join(tmpdir(), "vfu-e2e-boot-"));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  let chroot = "";
  let initramfs = "";

  t.before(async () => {
    chroot = await setupChroot({ quiet: true });
    initramfs = buildInitramfs({
      chroot,
      out: path.join(work, "list-pci.cpio.gz"),
      init: path.join(here, "guest", "list-pci.sh"),
    }).initramfs;
  });

  t.test("a guest with no vfio-user device boots to VFU-END and lists the q35 host bridge", async (t) => {
    const r = await bootGuest({ chroot, initramfs, timeoutMs: 60_000 });
    const tail = r.lines.slice(-20).join("\n");
    t.equal(r.timedOut, false, "QEMU did not time out");
    t.equal(r.panicked, false, "no kernel panic");
    t.equal(r.ended, true, "VFU-END seen", { consoleTail: tail, qemuStderr: r.stderr });
    t.equal(r.exitStatus, null, "/init ended through vfu_end");
    t.equal(r.exitCode, 0, "QEMU exited 0 after poweroff");
    const bridge = r.pci.find((d) => d.vendor === "8086" && d.device === "29c0");
    t.ok(bridge, "q35 host bridge 8086:29c0 listed");
    t.equal(bridge?.slot, "0000:00:00.0", "at 00:00.0");
    t.equal(bridge?.class, "060000", "class host bridge");
    t.equal(r.results["host-bridge"], "0000:00:00.0", "the guest's own lookup agrees");
    t.match(r.results.kernel, /^\d+\.\d+/, "the guest reports its kernel");
    t.comment(`boot to VFU-END: ${r.durationMs} ms, guest uptime ${r.results.uptime} s`);
  });

  t.test("anonymous RAM, and the VFU-WAIT console handshake", async (t) => {
    const handshake = buildInitramfs({
      chroot,
      out: path.join(work, "wait.cpio.gz"),
      initText: [
        "#!/bin/sh",
        ". /lib/vfu/prelude.sh",
        'vfu_result before "$(cat /tmp/flag 2>/dev/null || echo none)"',
        "if vfu_wait_host go 30; then vfu_result waited yes; else vfu_result waited no; fi",
        "vfu_result memtotal \"$(awk '/MemTotal/ {print $2}' /proc/meminfo)\"",
        "vfu_end",
        "",
      ].join("\n"),
    }).initramfs;
    const seen: string[] = [];
    const r = await bootGuest({
      chroot,
      initramfs: handshake,
      ram: "anon",
      memory: "256M",
      timeoutMs: 60_000,
      onLine: (line) => {
        if (line.startsWith("VFU-RESULT")) seen.push(line);
      },
      onWait: async (token) => {
        seen.push(`host saw ${token}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      },
    });
    t.equal(r.ended, true, "VFU-END seen");
    t.notOk(
      r.argv.some((a) => a.includes("memory-backend")),
      "no memory backend on the command line",
    );
    t.same(r.waits, ["go"], "the guest waited once");
    t.equal(r.results.waited, "yes", "the host's reply reached the guest");
    t.ok(Number(r.results.memtotal) < 256 * 1024, "guest RAM is the 256M asked for");
    t.same(
      seen,
      [
        "VFU-RESULT before none",
        "host saw go",
        "VFU-RESULT waited yes",
        `VFU-RESULT memtotal ${r.results.memtotal}`,
      ],
      "onLine/onWait order",
    );
  });

  t.test("QEMU refuses to start when nobody listens on the vfio-user socket", async (t) => {
    const dir = mkdtempSync(path.join(work, "nosrv-"));
    const r = await bootGuest({
      chroot,
      initramfs,
      sockets: [path.join(dir, "absent.sock")],
      timeoutMs: 30_000,
    });
    t.not(r.exitCode, 0, "QEMU exits with an error");
    t.equal(r.timedOut, false, "at once, not after a timeout");
    t.equal(r.lines.length, 0, "the guest never ran");
    t.match(
      r.stderr,
      /vfio-user-pci.*Failed to connect to '\/run\/vfu\/0\/absent\.sock': No such file or directory/,
    );
  });
}
