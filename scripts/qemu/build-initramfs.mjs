#!/usr/bin/env node
// Build a guest initramfs (gzip'd newc cpio) from the QEMU chroot made by setup-chroot.sh:
// static busybox with its applet links, the shared prelude, a per-test /init, and the wanted
// kernel modules (dependencies resolved through modules.dep, decompressed, load order written
// to /lib/modules-load.list). Usable as a module (buildInitramfs) and from the command line.
//
// The archive is written by this file itself (newc is a simple format), so the host needs no
// cpio, no xz and no root for device nodes: modules are decompressed with the chroot's static
// busybox, which runs on the host as it is.

import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = path.dirname(fileURLToPath(import.meta.url));
export const PRELUDE_PATH = path.join(here, "guest", "prelude.sh");

/** The chroot path setup-chroot.sh uses with the same environment. */
export function defaultChrootPath(env = process.env) {
  if (env.VFU_QEMU_CHROOT) return env.VFU_QEMU_CHROOT;
  const cache = env.VFU_QEMU_CACHE || path.join(env.HOME || homedir(), ".cache", "vfio-user-node");
  return path.join(cache, `trixie-qemu-${env.VFU_QEMU_VERSION || "11.1"}`);
}

function compareVersions(a, b) {
  return a.localeCompare(b, "en", { numeric: true });
}

/** The newest guest kernel in the chroot: { version, kernel (host path), modulesDir (host path) }. */
export function findKernel(chroot = defaultChrootPath()) {
  const boot = path.join(chroot, "boot");
  if (!existsSync(boot)) {
    throw new Error(`no ${boot}: is ${chroot} a chroot made by scripts/qemu/setup-chroot.sh?`);
  }
  const versions = readdirSync(boot)
    .filter((f) => f.startsWith("vmlinuz-"))
    .map((f) => f.slice("vmlinuz-".length))
    .sort(compareVersions);
  const version = versions.at(-1);
  if (!version) throw new Error(`no guest kernel (vmlinuz-*) in ${boot}`);
  const modulesDir = path.join(chroot, "usr", "lib", "modules", version);
  if (!existsSync(path.join(modulesDir, "modules.dep"))) {
    throw new Error(`no modules.dep for kernel ${version} in ${modulesDir}`);
  }
  return { version, kernel: path.join(boot, `vmlinuz-${version}`), modulesDir };
}

const canon = (name) => name.replace(/-/g, "_");
const moduleNameOf = (file) => path.basename(file).replace(/\.ko(\.(xz|zst|gz))?$/, "");

/**
 * Resolve module names (as in `modprobe NAME`, '-' and '_' alike) to files, dependencies first.
 * Returns { order: [{ name, file }], builtin: [names built into the kernel] }.
 */
export function resolveModules(modulesDir, names) {
  const dep = new Map(); // canonical name -> { name, file, deps: [files] }
  for (const line of readFileSync(path.join(modulesDir, "modules.dep"), "utf8").split("\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const file = line.slice(0, colon);
    const deps = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .filter(Boolean);
    dep.set(canon(moduleNameOf(file)), { name: moduleNameOf(file), file, deps });
  }
  const builtinFile = path.join(modulesDir, "modules.builtin");
  const builtinSet = new Set(
    existsSync(builtinFile)
      ? readFileSync(builtinFile, "utf8")
          .split("\n")
          .filter(Boolean)
          .map((f) => canon(moduleNameOf(f)))
      : [],
  );
  const order = [];
  const done = new Set();
  const builtin = [];
  const visit = (key, via) => {
    if (done.has(key)) return;
    const entry = dep.get(key);
    if (!entry) {
      throw new Error(`kernel module '${key}'${via ? ` (needed by ${via})` : ""} not found in ${modulesDir}`);
    }
    done.add(key);
    for (const d of entry.deps) visit(canon(moduleNameOf(d)), entry.name);
    order.push({ name: entry.name, file: entry.file });
  };
  for (const name of names) {
    const key = canon(name);
    if (!dep.has(key) && builtinSet.has(key)) {
      if (!builtin.includes(name)) builtin.push(name);
      continue;
    }
    visit(key, null);
  }
  return { order, builtin };
}

// ---- newc cpio writer ---------------------------------------------------------------------

class Cpio {
  chunks = [];
  ino = 1;
  size = 0;
  names = new Set();

  #push(buf) {
    this.chunks.push(buf);
    this.size += buf.length;
  }
  #pad() {
    const rem = this.size % 4;
    if (rem) this.#push(Buffer.alloc(4 - rem));
  }
  #entry(name, mode, data = Buffer.alloc(0), rdev = [0, 0]) {
    const hex = (n) => n.toString(16).padStart(8, "0");
    const nameBuf = Buffer.from(`${name}\0`);
    const fields = [this.ino++, mode, 0, 0, 1, 0, data.length, 0, 0, rdev[0], rdev[1], nameBuf.length, 0];
    this.#push(Buffer.from(`070701${fields.map(hex).join("")}`, "ascii"));
    this.#push(nameBuf);
    this.#pad();
    if (data.length) {
      this.#push(data);
      this.#pad();
    }
  }
  /** Directories for every parent of `name` (and `name` itself when dir). */
  #parents(name) {
    const parts = name.split("/");
    for (let i = 1; i < parts.length; i++) this.dir(parts.slice(0, i).join("/"));
  }
  dir(name) {
    if (this.names.has(name)) return;
    this.#parents(name);
    this.names.add(name);
    this.#entry(name, 0o040755);
  }
  file(name, data, perm = 0o644) {
    if (this.names.has(name)) throw new Error(`initramfs: ${name} added twice`);
    this.#parents(name);
    this.names.add(name);
    this.#entry(name, 0o100000 | perm, data);
  }
  symlink(name, target) {
    if (this.names.has(name)) return;
    this.#parents(name);
    this.names.add(name);
    this.#entry(name, 0o120777, Buffer.from(target));
  }
  chardev(name, major, minor, perm = 0o600) {
    this.#parents(name);
    this.names.add(name);
    this.#entry(name, 0o020000 | perm, Buffer.alloc(0), [major, minor]);
  }
  finish() {
    this.#entry("TRAILER!!!", 0);
    const rem = this.size % 512;
    if (rem) this.#push(Buffer.alloc(512 - rem));
    return Buffer.concat(this.chunks);
  }
}

function findBusybox(chroot) {
  for (const p of ["usr/bin/busybox", "bin/busybox"]) {
    const full = path.join(chroot, p);
    if (existsSync(full)) return full;
  }
  throw new Error(`no busybox in ${chroot} (busybox-static is installed by setup-chroot.sh)`);
}

/**
 * Build an initramfs.
 * @param {object} o
 * @param {string} o.out           where to write the .cpio.gz
 * @param {string} [o.init]        path of the guest init script (busybox sh); or
 * @param {string} [o.initText]    its text
 * @param {string[]} [o.modules]   kernel module names to include (dependencies are added)
 * @param {string} [o.chroot]      default: defaultChrootPath()
 * @param {string} [o.kernelOut]   copy the guest kernel there too
 * @param {Array<{src?: string, data?: string|Buffer, dest: string, mode?: number}>} [o.files] extra files
 * @returns {{ initramfs, kernel, kernelVersion, modules, builtin, bytes, ms }}
 */
export function buildInitramfs(o) {
  const t0 = performance.now();
  const chroot = o.chroot ?? defaultChrootPath();
  if (!o.out) throw new Error("buildInitramfs: 'out' is required");
  if (!o.init && o.initText === undefined)
    throw new Error("buildInitramfs: 'init' or 'initText' is required");
  const { version, kernel, modulesDir } = findKernel(chroot);
  const busybox = findBusybox(chroot);
  const { order, builtin } = resolveModules(modulesDir, o.modules ?? []);

  const a = new Cpio();
  for (const d of [
    "bin",
    "sbin",
    "usr/bin",
    "usr/sbin",
    "proc",
    "sys",
    "dev",
    "tmp",
    "run",
    "mnt",
    "root",
    "etc",
  ]) {
    a.dir(d);
  }
  a.chardev("dev/console", 5, 1);
  a.chardev("dev/null", 1, 3, 0o666);
  a.file("bin/busybox", readFileSync(busybox), 0o755);
  const applets = execFileSync(busybox, ["--list-full"], { encoding: "utf8" }).split("\n").filter(Boolean);
  for (const rel of applets) {
    if (rel === "bin/busybox") continue;
    const depth = rel.split("/").length - 1;
    a.symlink(rel, `${"../".repeat(depth)}bin/busybox`);
  }
  a.file("etc/passwd", Buffer.from("root:x:0:0:root:/root:/bin/sh\n"));
  a.file("etc/group", Buffer.from("root:x:0:\n"));
  a.file("lib/vfu/prelude.sh", readFileSync(PRELUDE_PATH), 0o644);
  a.file("init", o.init ? readFileSync(o.init) : Buffer.from(o.initText), 0o755);

  a.dir("lib/modules");
  for (const m of order) {
    const src = path.join(modulesDir, m.file);
    let data;
    if (src.endsWith(".ko")) data = readFileSync(src);
    else if (src.endsWith(".ko.xz")) data = execFileSync(busybox, ["xzcat", src], { maxBuffer: 1 << 28 });
    else if (src.endsWith(".ko.gz")) data = execFileSync(busybox, ["zcat", src], { maxBuffer: 1 << 28 });
    else throw new Error(`cannot decompress ${src} (only .ko, .ko.xz, .ko.gz)`);
    a.file(`lib/modules/${m.name}.ko`, data);
  }
  a.file("lib/modules-load.list", Buffer.from(order.map((m) => `${m.name}\n`).join("")));
  a.file("lib/vfu/kernel-version", Buffer.from(`${version}\n`));

  for (const f of o.files ?? []) {
    const dest = f.dest.replace(/^\/+/, "");
    const data = f.src ? readFileSync(f.src) : Buffer.from(f.data ?? "");
    a.file(dest, data, f.mode ?? (f.src ? statSync(f.src).mode & 0o777 : 0o644));
  }

  const gz = gzipSync(a.finish(), { level: 6 });
  mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
  writeFileSync(o.out, gz);
  let kernelPath = kernel;
  if (o.kernelOut) {
    mkdirSync(path.dirname(path.resolve(o.kernelOut)), { recursive: true });
    copyFileSync(kernel, o.kernelOut);
    kernelPath = o.kernelOut;
  }
  return {
    initramfs: o.out,
    kernel: kernelPath,
    kernelVersion: version,
    modules: order.map((m) => m.name),
    builtin,
    bytes: gz.length,
    ms: Math.round(performance.now() - t0),
  };
}

// ---- command line -------------------------------------------------------------------------

const USAGE = `usage: build-initramfs.mjs --out FILE --init SCRIPT [--module NAME]... [options]

Builds a gzip'd newc initramfs for a QEMU guest: static busybox, scripts/qemu/guest/prelude.sh
at /lib/vfu/prelude.sh, SCRIPT as /init, the named kernel modules and their dependencies
(decompressed, as /lib/modules/NAME.ko; load order in /lib/modules-load.list).
Prints the guest kernel's path on stdout (the copy's, with --kernel-out); a summary on stderr.

  --out FILE         output .cpio.gz (required)
  --init SCRIPT      the guest's /init, a busybox sh script (required)
  --module NAME      a kernel module to include (repeatable; also comma-separated)
  --file SRC:DEST    add a host file at DEST in the initramfs (repeatable)
  --chroot DIR       the chroot from setup-chroot.sh (default: ${defaultChrootPath()})
  --kernel-out FILE  copy the guest kernel there
  --json             print the whole summary as JSON on stdout instead
  -h, --help         this text
`;

function main(argv) {
  const o = { modules: [], files: [] };
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.startsWith("--") && arg.includes("=") ? arg.split(/=(.*)/s) : [arg, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "-h":
      case "--help":
        process.stdout.write(USAGE);
        return 0;
      case "--out":
        o.out = value();
        break;
      case "--init":
        o.init = value();
        break;
      case "--module":
      case "--modules":
        o.modules.push(...value().split(",").filter(Boolean));
        break;
      case "--file": {
        const v = value();
        const at = v.lastIndexOf(":");
        if (at <= 0) throw new Error(`--file wants SRC:DEST, got ${v}`);
        o.files.push({ src: v.slice(0, at), dest: v.slice(at + 1) });
        break;
      }
      case "--chroot":
        o.chroot = value();
        break;
      case "--kernel-out":
        o.kernelOut = value();
        break;
      case "--json":
        json = true;
        break;
      default:
        throw new Error(`unknown argument ${arg} (see --help)`);
    }
  }
  if (!o.out || !o.init) throw new Error("--out and --init are required (see --help)");
  const r = buildInitramfs(o);
  process.stderr.write(
    `[build-initramfs] ${r.initramfs}: ${r.bytes} bytes in ${r.ms} ms; kernel ${r.kernelVersion}; ` +
      `modules: ${r.modules.join(" ") || "(none)"}${r.builtin.length ? `; built in: ${r.builtin.join(" ")}` : ""}\n`,
  );
  process.stdout.write(json ? `${JSON.stringify(r, null, 2)}\n` : `${r.kernel}\n`);
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`[build-initramfs] error: ${e.message}\n`);
    process.exitCode = 1;
  }
}
