// PCI Power Management capability (ID 0x01, version 3). The function supports D0 and D3hot only:
// the driver writes the PowerState field of PMCSR; writes asking for D1 or D2 (not supported)
// leave the state unchanged, as the specification asks. Leaving D3hot for D0 performs an
// internal ("soft") reset of the function — config space back to power-on values and the
// device model's reset("power") — unless the capability declares No_Soft_Reset, in which case
// every register and the device state are kept. PME is not supported (PME_En and PME_Status
// read 0).
import type { ConfigSpace } from "../config-space.ts";

/** Register offsets inside the capability. */
export const PmCap = {
  ID: 0x01, //          capability ID
  PMC: 0x02, //         RO  Power Management Capabilities (u16)
  PMCSR: 0x04, //       RW  Power Management Control/Status (u16)
  BSE: 0x06, //         RO  PMCSR bridge support extensions (u8): 0
  DATA: 0x07, //        RO  Data (u8): 0
  SIZE: 8,
} as const;

/** Bits of PMCSR. */
export const PmCsr = {
  STATE_MASK: 0x0003, //     RW  PowerState: 0 = D0, 3 = D3hot (1, 2 unsupported: writes ignored)
  NO_SOFT_RESET: 0x0008, //  RO  D3hot -> D0 keeps the function's state
  PME_ENABLE: 0x0100, //     RO  PME_En: 0 (no PME)
  PME_STATUS: 0x8000, //     RO  PME_Status: 0 (no PME)
} as const;

export const PowerState = { D0: 0, D1: 1, D2: 2, D3HOT: 3 } as const;

const PMC_VERSION_3 = 0x0003;

export interface PmSpec {
  /** D3hot -> D0 keeps the function's state instead of resetting it (No_Soft_Reset). */
  noSoftReset?: boolean;
  /** Pin the capability at this config offset. */
  offset?: number;
}

export class PowerManagement {
  readonly offset: number;
  readonly #cs: ConfigSpace;
  readonly #noSoftReset: boolean;

  /** `softReset` runs when the function leaves D3hot for D0 without No_Soft_Reset. */
  constructor(
    cs: ConfigSpace,
    offset: number,
    next: number,
    spec: PmSpec,
    softReset: () => void | Promise<void>,
  ) {
    this.offset = offset;
    this.#cs = cs;
    this.#noSoftReset = spec.noSoftReset === true;
    cs.define(offset, 1, { value: PmCap.ID });
    cs.define(offset + 1, 1, { value: next });
    cs.define(offset + PmCap.PMC, 2, { value: PMC_VERSION_3 });
    cs.define(offset + PmCap.PMCSR, 2, {
      value: this.#noSoftReset ? PmCsr.NO_SOFT_RESET : 0,
      writable: PmCsr.STATE_MASK,
    });
    cs.define(offset + PmCap.BSE, 1, { value: 0 });
    cs.define(offset + PmCap.DATA, 1, { value: 0 });
    cs.watch(offset + PmCap.PMCSR, 2, ({ old }) => {
      const was = old[0]! & PmCsr.STATE_MASK;
      const now = this.state;
      if (now === PowerState.D1 || now === PowerState.D2) {
        this.#setState(was); // unsupported state: the write is discarded
        return;
      }
      if (was === PowerState.D3HOT && now === PowerState.D0 && !this.#noSoftReset) return softReset();
    });
  }

  /** Current PowerState (0 = D0, 3 = D3hot). */
  get state(): number {
    return this.#cs.get16(this.offset + PmCap.PMCSR) & PmCsr.STATE_MASK;
  }

  #setState(state: number): void {
    const at = this.offset + PmCap.PMCSR;
    this.#cs.set16(at, (this.#cs.get16(at) & ~PmCsr.STATE_MASK) | state);
  }
}
