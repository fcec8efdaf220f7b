#!/usr/bin/env node
// Boot a Linux guest under the chroot's QEMU (TCG, q35 by default) with 0..n vfio-user-pci
// devices, capture its serial console line by line, and parse the guest's VFU-* lines
// (see guest/prelude.sh). Usable as a module (bootGuest) and from the command line (--help).
//
// QEMU runs chrooted inside a private mount namespace of its own: /proc, /dev, a tmpfs on /run,
// the kernel, the initramfs and each socket's directory (at /run/vfu/<n>/) are mounted there
// and vanish with QEMU, whatever happens to this process.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { buildInitramfs, defaultChrootPath, findKernel } from "./build-initramfs.mjs";

export { buildInitramfs, defaultChrootPath, findKernel } from "./build-initramfs.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
export const SETUP_CHROOT_SCRIPT = path.join(here, "setup-chroot.sh");
export const DEFAULT_APPEND = "console=ttyS0 quiet panic=-1";

/**
 * Run setup-chroot.sh (makes the chroot the first time, only verifies it later).
 * Resolves with the chroot's path; its log goes to our stderr unless quiet.
 */
export function setupChroot({ quiet = false, env = process.env } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [SETUP_CHROOT_SCRIPT], {
      stdio: ["ignore", "pipe", quiet ? "pipe" : "inherit"],
      env,
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr?.on("data", (d) => {
      err += d;
    });
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve(out.trim().split("\n").at(-1));
      else reject(new Error(`setup-chroot.sh failed with exit code ${code}${err ? `:\n${err.trim()}` : ""}`));
    });
  });
}

// ---- console parsing ----------------------------------------------------------------------

const VFU_LINE = /(?:^|[^A-Za-z0-9_-])VFU-([A-Z][A-Z0-9]*)(?:[ \t]+(.*?))?[ \t]*$/;

/** Parse one VFU-PCI line's payload into an object. */
export function parsePciLine(text) {
  const [slot, ids, ...fields] = text.trim().split(/\s+/);
  const [vendor, device] = (ids ?? "").split(":");
  const entry = { slot, vendor, device, class: undefined, driver: undefined, bars: {} };
  for (const f of fields) {
    const eq = f.indexOf("=");
    if (eq < 0) continue;
    const key = f.slice(0, eq);
    const value = f.slice(eq + 1);
    if (/^bar\d$|^rom$/.test(key)) {
      const m = /^([a-z0-9,]+):0x([0-9a-f]+)-0x([0-9a-f]+)$/.exec(value);
      if (!m) continue;
      const kinds = m[1].split(",");
      const start = BigInt(`0x${m[2]}`);
      const end = BigInt(`0x${m[3]}`);
      entry.bars[key === "rom" ? "rom" : Number(key.slice(3))] = {
        type: kinds[0],
        prefetchable: kinds.includes("pref"),
        is64: kinds.includes("64"),
        start,
        size: end - start + 1n,
      };
    } else if (key === "driver") {
      entry.driver = value === "-" ? null : value;
    } else if (key === "irq") {
      entry.irq = Number(value);
    } else {
      entry[key] = value;
    }
  }
  return entry;
}

/**
 * Parse console lines. Returns
 *   events:     [{ tag, text, index }] every VFU-* line in order (index into lines)
 *   results:    { key: value } from VFU-RESULT (the last one of a key wins)
 *   resultList: [[key, value]] in order
 *   insmod:     { module: "ok" | "fail ..." }
 *   pci:        [entry] the latest VFU-PCI line per slot, first-seen order (see parsePciLine)
 *   waits:      [token] from VFU-WAIT
 *   ended:      whether VFU-END was seen
 *   exitStatus: /init's exit status if it ended without vfu_end (VFU-EXIT), else null
 *   panicked:   whether the kernel panicked
 */
export function parseConsole(lines) {
  const events = [];
  const results = {};
  const resultList = [];
  const insmod = {};
  const pci = new Map();
  const waits = [];
  let ended = false;
  let exitStatus = null;
  let panicked = false;
  lines.forEach((line, index) => {
    if (line.includes("Kernel panic - not syncing")) panicked = true;
    const m = VFU_LINE.exec(line);
    if (!m) return;
    const tag = m[1];
    const text = m[2] ?? "";
    events.push({ tag, text, index });
    switch (tag) {
      case "RESULT": {
        const sp = text.search(/\s/);
        const key = sp < 0 ? text : text.slice(0, sp);
        const value = sp < 0 ? "" : text.slice(sp + 1).trim();
        results[key] = value;
        resultList.push([key, value]);
        break;
      }
      case "INSMOD": {
        const sp = text.indexOf(" ");
        if (sp > 0) insmod[text.slice(0, sp)] = text.slice(sp + 1);
        break;
      }
      case "PCI": {
        const e = parsePciLine(text);
        pci.delete(e.slot);
        pci.set(e.slot, e);
        break;
      }
      case "WAIT":
        waits.push(text);
        break;
      case "EXIT":
        exitStatus = Number(text);
        break;
      case "END":
        ended = true;
        break;
    }
  });
  return { events, results, resultList, insmod, pci: [...pci.values()], waits, ended, exitStatus, panicked };
}

// ---- QEMU command line --------------------------------------------------------------------

function normalizeSockets(sockets) {
  const dirs = [];
  const list = (sockets ?? []).map((s, i) => {
    const spec = typeof s === "string" ? { path: s } : { ...s };
    if (!spec.path) throw new Error(`sockets[${i}]: no path`);
    const abs = path.resolve(spec.path);
    const dir = path.dirname(abs);
    let n = dirs.indexOf(dir);
    if (n < 0) n = dirs.push(dir) - 1;
    return { ...spec, hostPath: abs, chrootPath: `/run/vfu/${n}/${path.basename(abs)}` };
  });
  return { dirs, list };
}

/**
 * The QEMU argv (without the chroot wrapper), for paths as seen inside the chroot.
 * Options as for bootGuest; kernel/initramfs here are in-chroot paths.
 */
export function qemuArgv({
  kernel = "/run/vfu-boot/kernel",
  initramfs = "/run/vfu-boot/initrd",
  sockets = [],
  ram = "memfd",
  memory = "512M",
  machine = "q35",
  smp = 1,
  append = DEFAULT_APPEND,
  extraAppend = "",
  qemuArgs = [],
} = {}) {
  if (ram !== "memfd" && ram !== "anon") throw new Error(`ram must be "memfd" or "anon", got ${ram}`);
  const argv = ["qemu-system-x86_64", "-accel", "tcg"];
  if (ram === "memfd") {
    argv.push(
      "-machine",
      `${machine},memory-backend=ram0`,
      "-object",
      `memory-backend-memfd,id=ram0,size=${memory},share=on`,
    );
  } else {
    argv.push("-machine", machine);
  }
  argv.push("-m", String(memory), "-smp", String(smp));
  argv.push("-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot");
  argv.push(
    "-kernel",
    kernel,
    "-initrd",
    initramfs,
    "-append",
    [append, extraAppend].filter(Boolean).join(" "),
  );
  for (const [i, s] of sockets.entries()) {
    const dev = {
      driver: "vfio-user-pci",
      id: s.id ?? `vfu${i}`,
      socket: { path: s.chrootPath ?? s.path, type: "unix" },
      ...(s.props ?? {}),
    };
    argv.push("-device", JSON.stringify(dev));
  }
  argv.push(...qemuArgs);
  return argv;
}

// In a private mount namespace: mount what QEMU needs into the chroot, then become QEMU (same
// pid all the way, so killing our child kills QEMU; and QEMU dies with us via PDEATHSIG).
const WRAPPER = `
mount --make-rprivate /
d=$1; k=$2; i=$3; shift 3
mount -t proc proc "$d/proc"
mount --rbind /dev "$d/dev"
mount -t tmpfs -o mode=755 vfu-run "$d/run"
mkdir -p "$d/run/vfu-boot" "$d/run/vfu"
: >"$d/run/vfu-boot/kernel"; mount --bind "$k" "$d/run/vfu-boot/kernel"
: >"$d/run/vfu-boot/initrd"; mount --bind "$i" "$d/run/vfu-boot/initrd"
n=0
while [ "$1" != -- ]; do
  mkdir -p "$d/run/vfu/$n"; mount --bind "$1" "$d/run/vfu/$n"
  n=$((n + 1)); shift
done
shift
exec setpriv --pdeathsig KILL chroot "$d" /usr/bin/env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 "$@"
`;

const live = new Set();
let exitHookInstalled = false;
function track(pid) {
  live.add(pid);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const p of live) {
        try {
          process.kill(-p, "SIGKILL");
        } catch {}
      }
    });
  }
}

/**
 * Boot a guest and wait for QEMU to exit.
 *
 * @param {object} o
 * @param {string} o.initramfs        host path of the initramfs (build it with buildInitramfs)
 * @param {string} [o.chroot]         default: defaultChrootPath() (what setup-chroot.sh makes)
 * @param {string} [o.kernel]         host path; default: the chroot's newest /boot/vmlinuz-*
 * @param {Array<string|{path: string, id?: string, props?: object}>} [o.sockets]
 *        one vfio-user-pci device per socket (host paths; props are extra device properties,
 *        e.g. {"x-msg-timeout": 10000})
 * @param {"memfd"|"anon"} [o.ram]    memfd: memory-backend-memfd share=on (DMA_MAPs carry fds);
 *                                    anon: plain RAM (no fds: the server must use DMA_READ/WRITE)
 * @param {string} [o.memory]         guest RAM size, default "512M"
 * @param {string} [o.machine]        default "q35" ("pc" works too)
 * @param {number} [o.smp]            vCPUs, default 1
 * @param {string} [o.append]         kernel command line, default DEFAULT_APPEND
 * @param {string} [o.extraAppend]    appended to it
 * @param {string[]} [o.qemuArgs]     extra QEMU arguments
 * @param {number} [o.timeoutMs]      kill QEMU after this long (default 60000); timedOut: true
 * @param {(line: string, ctx: BootContext) => void|Promise<void>} [o.onLine]
 *        every console line as it arrives (calls are serialized: a returned promise is awaited
 *        before the next line is handed over; QEMU keeps running meanwhile)
 * @param {(token: string, ctx: BootContext) => void|Promise<void>} [o.onWait]
 *        the guest printed "VFU-WAIT token" (vfu_wait_host): once this settles, the token is
 *        typed on the guest console so the guest goes on. Without onWait it is typed at once.
 * @param {boolean} [o.echo]          copy console and QEMU stderr to our stderr (default: env VFU_QEMU_ECHO=1)
 * @param {AbortSignal} [o.signal]    abort: QEMU is killed and the promise rejects
 * BootContext: { send(text), kill(), lines, elapsedMs() }
 * @returns {Promise<{lines, stderr, exitCode, signal, timedOut, durationMs, argv, events, results,
 *           resultList, insmod, pci, waits, ended, exitStatus, panicked}>}
 *   Rejects only when QEMU cannot be started or a callback throws (QEMU is killed first).
 *   A QEMU that refuses to start resolves with exitCode != 0 and its message in stderr.
 */
export function bootGuest(o) {
  const chroot = o.chroot ?? defaultChrootPath();
  if (!existsSync(path.join(chroot, "usr/bin/qemu-system-x86_64"))) {
    return Promise.reject(
      new Error(
        `no QEMU chroot at ${chroot}: run scripts/qemu/setup-chroot.sh first (npm run test:qemu does)`,
      ),
    );
  }
  if (!o.initramfs || !existsSync(o.initramfs)) {
    return Promise.reject(new Error(`initramfs not found: ${o.initramfs} (build it with buildInitramfs)`));
  }
  const kernel = path.resolve(o.kernel ?? findKernel(chroot).kernel);
  const { dirs, list } = normalizeSockets(o.sockets);
  for (const d of dirs) {
    if (!existsSync(d)) return Promise.reject(new Error(`socket directory does not exist: ${d}`));
  }
  const argv = qemuArgv({ ...o, kernel: undefined, initramfs: undefined, sockets: list });
  const timeoutMs = o.timeoutMs ?? 60_000;
  const echo = o.echo ?? process.env.VFU_QEMU_ECHO === "1";

  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(
      "unshare",
      [
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-euc",
        WRAPPER,
        "vfu-boot",
        chroot,
        kernel,
        path.resolve(o.initramfs),
        ...dirs,
        "--",
        ...argv,
      ],
      { stdio: ["pipe", "pipe", "pipe"], detached: true },
    );
    const lines = [];
    let stderr = "";
    let partial = "";
    let timedOut = false;
    let failure = null;
    let exited = false;
    let endTimer = null;
    let chain = Promise.resolve();

    const kill = () => {
      if (exited || child.pid === undefined) return;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        try {
          child.kill("SIGKILL");
        } catch {}
      }
    };
    const ctx = {
      send(text) {
        if (!exited && child.stdin.writable) child.stdin.write(text);
      },
      kill,
      lines,
      elapsedMs: () => Math.round(performance.now() - t0),
    };
    const fail = (err) => {
      if (!failure) failure = err instanceof Error ? err : new Error(String(err));
      kill();
    };
    const onAbort = () => fail(o.signal.reason ?? new Error("aborted"));
    if (o.signal?.aborted) {
      queueMicrotask(onAbort);
    }
    o.signal?.addEventListener("abort", onAbort, { once: true });

    if (child.pid !== undefined) track(child.pid);
    child.stdin.on("error", () => {});
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, timeoutMs);

    const handleLine = (raw) => {
      const line = raw.replace(/\r/g, "");
      lines.push(line);
      if (echo) process.stderr.write(`[guest] ${line}\n`);
      const m = VFU_LINE.exec(line);
      if (m?.[1] === "END" && !endTimer) {
        // poweroff -f follows at once; do not hang if it does not.
        endTimer = setTimeout(kill, 15_000);
      }
      if (o.onLine) {
        chain = chain.then(() => o.onLine(line, ctx)).catch(fail);
      }
      if (m?.[1] === "WAIT") {
        const token = (m[2] ?? "").trim();
        chain = chain
          .then(() => o.onWait?.(token, ctx))
          .then(() => ctx.send(`${token}\n`))
          .catch(fail);
      }
    };
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk) => {
      partial += chunk;
      let nl = partial.indexOf("\n");
      while (nl >= 0) {
        handleLine(partial.slice(0, nl));
        partial = partial.slice(nl + 1);
        nl = partial.indexOf("\n");
      }
    });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
      if (echo) process.stderr.write(chunk.replace(/^(?=.)/gm, "[qemu] "));
    });
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`could not start unshare/QEMU: ${err.message}`));
    });
    child.on("close", async (exitCode, signal) => {
      exited = true;
      clearTimeout(timer);
      if (endTimer) clearTimeout(endTimer);
      live.delete(child.pid);
      o.signal?.removeEventListener("abort", onAbort);
      if (partial) handleLine(partial);
      await chain;
      if (failure) {
        reject(failure);
        return;
      }
      resolve({
        lines,
        stderr,
        exitCode,
        signal,
        timedOut,
        durationMs: Math.round(performance.now() - t0),
        argv,
        ...parseConsole(lines),
      });
    });
  });
}

// ---- command line -------------------------------------------------------------------------

const USAGE = `usage: boot.mjs (--init SCRIPT [--module NAME]... | --initramfs FILE) [options] [-- QEMU_ARGS...]

Boots a guest under the chroot's QEMU (TCG) and prints its console. Exit status: 0 when the
guest printed VFU-END via vfu_end and QEMU exited 0; 124 on timeout; 1 otherwise.

  --init SCRIPT        guest /init (busybox sh, sources /lib/vfu/prelude.sh); an initramfs is
                       built for it in a temporary directory
  --module NAME        kernel module for that initramfs (repeatable, or comma-separated)
  --initramfs FILE     use this initramfs instead
  --socket PATH        add a vfio-user-pci device on this socket (repeatable)
  --ram memfd|anon     guest RAM: shared memfd (default) or plain anonymous memory
  --memory SIZE        guest RAM size (default 512M)
  --machine NAME       q35 (default) or pc
  --smp N              vCPUs (default 1)
  --append TEXT        extra kernel command line
  --timeout SECONDS    kill QEMU after this long (default 60)
  --chroot DIR         default: ${defaultChrootPath()}
  --kernel FILE        default: the chroot's /boot/vmlinuz-*
  --setup              run setup-chroot.sh first
  --json               print a JSON summary instead of the console
  --print-argv         print the QEMU command line (as seen in the chroot) and exit
  -h, --help           this text
`;

async function main(args) {
  const o = { sockets: [], qemuArgs: [] };
  const modules = [];
  let init;
  let json = false;
  let setup = false;
  let printArgv = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      o.qemuArgs.push(...args.slice(i + 1));
      break;
    }
    const [flag, inline] = arg.startsWith("--") && arg.includes("=") ? arg.split(/=(.*)/s) : [arg, undefined];
    const value = () => {
      const v = inline ?? args[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "-h":
      case "--help":
        process.stdout.write(USAGE);
        return 0;
      case "--init":
        init = value();
        break;
      case "--module":
      case "--modules":
        modules.push(...value().split(",").filter(Boolean));
        break;
      case "--initramfs":
        o.initramfs = value();
        break;
      case "--socket":
        o.sockets.push(value());
        break;
      case "--ram":
        o.ram = value();
        break;
      case "--memory":
        o.memory = value();
        break;
      case "--machine":
        o.machine = value();
        break;
      case "--smp":
        o.smp = Number(value());
        break;
      case "--append":
        o.extraAppend = value();
        break;
      case "--timeout":
        o.timeoutMs = Number(value()) * 1000;
        break;
      case "--chroot":
        o.chroot = value();
        break;
      case "--kernel":
        o.kernel = value();
        break;
      case "--setup":
        setup = true;
        break;
      case "--json":
        json = true;
        break;
      case "--print-argv":
        printArgv = true;
        break;
      default:
        throw new Error(`unknown argument ${arg} (see --help)`);
    }
  }
  if (printArgv) {
    process.stdout.write(
      `${JSON.stringify(qemuArgv({ ...o, sockets: normalizeSockets(o.sockets).list }))}\n`,
    );
    return 0;
  }
  if (!init === !o.initramfs) throw new Error("give exactly one of --init or --initramfs (see --help)");
  if (setup) o.chroot = await setupChroot();
  let tmp;
  try {
    if (init) {
      tmp = mkdtempSync(path.join(tmpdir(), "vfu-boot-"));
      const built = buildInitramfs({
        chroot: o.chroot,
        out: path.join(tmp, "initramfs.cpio.gz"),
        init,
        modules,
      });
      process.stderr.write(
        `[boot] initramfs built in ${built.ms} ms (modules: ${built.modules.join(" ") || "none"})\n`,
      );
      o.initramfs = built.initramfs;
    }
    if (!json) o.onLine = (line) => process.stdout.write(`${line}\n`);
    const r = await bootGuest(o);
    if (r.stderr && !json) process.stderr.write(r.stderr);
    const ok = r.ended && r.exitStatus === null && r.exitCode === 0 && !r.timedOut;
    if (json) {
      const { lines, argv, stderr, events, ...summary } = r;
      process.stdout.write(
        `${JSON.stringify({ ...summary, stderr, lineCount: lines.length }, (_k, v) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v), 2)}\n`,
      );
    }
    process.stderr.write(
      `[boot] QEMU exit ${r.exitCode ?? r.signal} after ${r.durationMs} ms; ` +
        `${r.timedOut ? "TIMED OUT; " : ""}${r.ended ? "VFU-END seen" : "no VFU-END"}` +
        `${r.exitStatus !== null ? `; /init exited with ${r.exitStatus}` : ""}${r.panicked ? "; KERNEL PANIC" : ""}\n`,
    );
    return r.timedOut ? 124 : ok ? 0 : 1;
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`[boot] error: ${e.message}\n`);
      process.exitCode = 1;
    },
  );
}
