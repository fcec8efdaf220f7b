// How a PCI device model signals interrupts (`ctx.irq`). The model names an event by vector
// number; the function routes it by what the driver enabled in config space, as hardware does:
// 1. MSI-X Enable set: MSI-X vector n (masking and the PBA per msix.ts; beyond the table: the last
//    vector);
// 2. else MSI Enable set: MSI vector n (per-vector masking per msi.ts; beyond the allocated
//    vectors: the last allocated one);
// 3. else, when the function has an Interrupt Pin: INTx. INTx is a level: `raise(n)` asserts it
//    and it stays asserted until `lower(n)` (for every vector raised) — the model lowers when the
//    driver acknowledges the event in its registers. `setIntx(level)` drives the line directly
//    besides. Command.Interrupt Disable keeps the line deasserted; Status.Interrupt Status shows
//    the function's INTx condition either way.
// 4. else (no pin, nothing enabled) the event is dropped and counted.
// `lower(n)` in MSI/MSI-X mode withdraws a message still pending for n (masked). Messages are not
// gated on Command.Bus Master: the client delivers them through the eventfds it bound. ERR and REQ are
// the vfio error and request notifiers (one eventfd each). Eventfd delivery, SET_IRQS masking and
// per-vector counters live in the IrqController (src/device/irq.ts).
import { PciIrq } from "../../protocol/index.ts";
import type { IrqApi } from "../device/definition.ts";
import type { Msi } from "./capabilities/msi.ts";
import type { Msix } from "./capabilities/msix.ts";
import type { ConfigSpace } from "./config-space.ts";
import { PciCommand, PciHeader, PciStatus } from "./header.ts";

export type PciIrqMode = "msix" | "msi" | "intx" | "none";

/** The interrupt API a PCI device model gets as `ctx.irq`. */
export interface PciIrqApi {
  /** Where `raise` goes now, from the config space. */
  readonly mode: PciIrqMode;
  /** Signal event `vector` (default 0): an MSI-X or MSI message, or assert INTx until `lower`. */
  raise(vector?: number): void;
  /** The condition behind `vector` is gone: INTx drops when nothing else holds it; a message
   * latched while masked is withdrawn. */
  lower(vector?: number): void;
  /** Drive the INTx line directly (ORed with vectors raised in INTx mode). */
  setIntx(asserted: boolean): void;
  /** Signal the ERR notifier (vfio index 3): QEMU stops the VM on it. */
  error(): void;
  /** Signal the REQ notifier (vfio index 4): ask the client to release the device. */
  request(): void;
}

export class PciInterrupts implements PciIrqApi {
  readonly #cs: ConfigSpace;
  readonly #irq: IrqApi;
  readonly #hasPin: boolean;
  readonly #maxVectors: number;
  msi: Msi | null = null;
  msix: Msix | null = null;
  readonly #held = new Set<number>();
  #line = false;
  #level = false;
  /** Events raised with nowhere to go (no pin, nothing enabled). */
  dropped = 0;

  constructor(cs: ConfigSpace, irq: IrqApi, hasPin: boolean, maxVectors: number) {
    this.#cs = cs;
    this.#irq = irq;
    this.#hasPin = hasPin;
    this.#maxVectors = Math.max(1, maxVectors);
  }

  get mode(): PciIrqMode {
    if (this.msix?.enabled) return "msix";
    if (this.msi?.enabled) return "msi";
    return this.#hasPin ? "intx" : "none";
  }

  raise(vector = 0): void {
    this.#checkVector(vector);
    switch (this.mode) {
      case "msix":
        this.msix!.raise(vector);
        return;
      case "msi":
        this.msi!.raise(vector);
        return;
      case "intx":
        this.#held.add(vector);
        this.sync();
        return;
      case "none":
        this.dropped++;
        return;
    }
  }

  lower(vector = 0): void {
    this.#checkVector(vector);
    this.#held.delete(vector);
    const mode = this.mode;
    if (mode === "msix") this.msix!.withdraw(vector);
    else if (mode === "msi") this.msi!.withdraw(vector);
    this.sync();
  }

  setIntx(asserted: boolean): void {
    this.#line = asserted;
    this.sync();
  }

  error(): void {
    this.#irq.raise(PciIrq.ERR, 0);
  }

  request(): void {
    this.#irq.raise(PciIrq.REQ, 0);
  }

  /** Recompute the INTx line and Status.Interrupt Status (after a Command, MSI or MSI-X write). */
  sync(): void {
    if (!this.#hasPin) return;
    const condition = this.mode === "intx" && (this.#held.size > 0 || this.#line);
    this.#cs.update16(PciHeader.STATUS, PciStatus.INTERRUPT, condition);
    const disabled = (this.#cs.get16(PciHeader.COMMAND) & PciCommand.INTX_DISABLE) !== 0;
    const level = condition && !disabled;
    if (level !== this.#level) {
      this.#level = level;
      this.#irq.setLevel(PciIrq.INTX, 0, level);
    }
  }

  /** Function reset: nothing held, the line low. */
  reset(): void {
    this.#held.clear();
    this.#line = false;
    this.sync();
  }

  #checkVector(vector: number): void {
    if (!Number.isInteger(vector) || vector < 0 || vector >= this.#maxVectors) {
      throw new RangeError(
        `interrupt vector ${vector} is out of range (the function has ${this.#maxVectors})`,
      );
    }
  }
}
