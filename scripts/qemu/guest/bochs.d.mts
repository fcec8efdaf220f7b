// Types of bochs.mjs (the guest pieces of the bochs-display QEMU test and benchmark).
export declare const MMIO_WRITES_SOURCE: string;
export declare const SEQ_OFFSET: number;
export declare const CONSOLE_TEXT: {
  title: string;
  xs: { row: number; column: number; count: number };
  green: { row: number; column: number; text: string };
};
export declare function buildMmioWrites(outDir: string): string;
export declare function bochsInit(o: { seqCount: number; fillBytes: number; console: boolean }): string;
export declare function parseMmioWrites(
  text: string | undefined,
): { stores: number; ns: number; back: number; nsPerStore: number } | null;
