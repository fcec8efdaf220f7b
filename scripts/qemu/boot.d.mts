// Types for boot.mjs (and what it re-exports from build-initramfs.mjs), for TypeScript tests.

export declare const SETUP_CHROOT_SCRIPT: string;
export declare const DEFAULT_APPEND: string;
export declare const PRELUDE_PATH: string;

export declare function defaultChrootPath(env?: NodeJS.ProcessEnv): string;
export declare function findKernel(chroot?: string): { version: string; kernel: string; modulesDir: string };

export interface BuildInitramfsOptions {
  /** Where to write the .cpio.gz. */
  out: string;
  /** Host path of the guest /init (busybox sh); or give initText. */
  init?: string;
  initText?: string;
  /** Kernel module names ('-' and '_' alike); dependencies are added, deps first. */
  modules?: string[];
  /** Default: defaultChrootPath(). */
  chroot?: string;
  /** Copy the guest kernel there too. */
  kernelOut?: string;
  /** Extra files: from a host file (src) or given data. */
  files?: Array<{ src?: string; data?: string | Buffer; dest: string; mode?: number }>;
}
export interface BuildInitramfsResult {
  initramfs: string;
  kernel: string;
  kernelVersion: string;
  /** Load order, dependencies first (as in /lib/modules-load.list). */
  modules: string[];
  /** Requested modules that are built into the kernel (nothing to load). */
  builtin: string[];
  bytes: number;
  ms: number;
}
export declare function buildInitramfs(o: BuildInitramfsOptions): BuildInitramfsResult;

export declare function setupChroot(o?: { quiet?: boolean; env?: NodeJS.ProcessEnv }): Promise<string>;

export interface SocketSpec {
  /** Host path of the vfio-user server's UNIX socket. */
  path: string;
  /** QEMU device id (default vfu<index>). */
  id?: string;
  /** Extra vfio-user-pci properties, e.g. { "x-msg-timeout": 10000 }. */
  props?: Record<string, unknown>;
}

export interface BootContext {
  /** Type text on the guest's serial console. */
  send(text: string): void;
  /** Kill QEMU now. */
  kill(): void;
  /** Console lines so far. */
  lines: string[];
  elapsedMs(): number;
}

export interface BootOptions {
  initramfs: string;
  chroot?: string;
  kernel?: string;
  sockets?: Array<string | SocketSpec>;
  /** memfd: shared memfd RAM (DMA_MAPs carry fds); anon: plain RAM (no fds). Default memfd. */
  ram?: "memfd" | "anon";
  /** Default "512M". */
  memory?: string;
  /** Default "q35". */
  machine?: string;
  smp?: number;
  append?: string;
  extraAppend?: string;
  qemuArgs?: string[];
  /** Default 60000. */
  timeoutMs?: number;
  onLine?: (line: string, ctx: BootContext) => void | Promise<void>;
  onWait?: (token: string, ctx: BootContext) => void | Promise<void>;
  echo?: boolean;
  signal?: AbortSignal;
}

export interface PciBar {
  type: "io" | "mem";
  prefetchable: boolean;
  is64: boolean;
  start: bigint;
  size: bigint;
}
export interface PciEntry {
  slot: string;
  vendor: string;
  device: string;
  class?: string;
  driver?: string | null;
  sub?: string;
  rev?: string;
  irq?: number;
  bars: Record<number | "rom", PciBar>;
}

export interface ConsoleSummary {
  events: Array<{ tag: string; text: string; index: number }>;
  results: Record<string, string>;
  resultList: Array<[string, string]>;
  insmod: Record<string, string>;
  pci: PciEntry[];
  waits: string[];
  ended: boolean;
  exitStatus: number | null;
  panicked: boolean;
}

export interface BootResult extends ConsoleSummary {
  lines: string[];
  stderr: string;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  durationMs: number;
  argv: string[];
}

export declare function parseConsole(lines: string[]): ConsoleSummary;
export declare function parsePciLine(text: string): PciEntry;
export declare function qemuArgv(
  o?: Partial<BootOptions> & { sockets?: Array<SocketSpec & { chrootPath?: string }> },
): string[];
export declare function bootGuest(o: BootOptions): Promise<BootResult>;
