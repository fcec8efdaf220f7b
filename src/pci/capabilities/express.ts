// PCI Express capability (ID 0x10), version 2, device/port type Endpoint. Its presence makes the
// function a PCI Express function: 4096 bytes of config space with extended capabilities at 0x100.
// - Device Control holds the error-reporting enables, Max_Payload_Size, Max_Read_Request_Size,
//   relaxed ordering / no snoop (all RW), and Initiate Function Level Reset: writing 1 there
//   (when FLR is declared) resets the function — config space to power-on values and the device
//   model's reset("flr") — and the bit always reads 0. As the specification asks, an FLR keeps
//   Max_Payload_Size and the Link Control registers (the link is not the function's to reset).
// - Device Status error bits are RW1C (the device model reports errors through ctx.pci).
// - The link registers describe one link of the declared speed and width, trained at that speed.
// - Slot and Root registers, and the "2" registers' optional features, are read-only 0.
import type { ConfigSpace } from "../config-space.ts";

/** Register offsets inside the capability (version 2: 0x3C bytes). */
export const ExpressCap = {
  ID: 0x10, //           capability ID
  FLAGS: 0x02, //        RO   PCI Express Capabilities (u16): version 3:0, port type 7:4
  DEVCAP: 0x04, //       RO   Device Capabilities (u32)
  DEVCTL: 0x08, //       RW   Device Control (u16, bits in ExpressDevCtl)
  DEVSTA: 0x0a, //       RW1C Device Status (u16, error bits 3:0)
  LNKCAP: 0x0c, //       RO   Link Capabilities (u32): max speed 3:0, max width 9:4
  LNKCTL: 0x10, //       RW   Link Control (u16)
  LNKSTA: 0x12, //       RO   Link Status (u16): current speed 3:0, width 9:4
  SLTCAP: 0x14, //       RO   Slot Capabilities: 0 (no slot)
  SLTCTL: 0x18, //       RO   Slot Control: 0
  SLTSTA: 0x1a, //       RO   Slot Status: 0
  RTCTL: 0x1c, //        RO   Root Control: 0
  RTCAP: 0x1e, //        RO   Root Capabilities: 0
  RTSTA: 0x20, //        RO   Root Status: 0
  DEVCAP2: 0x24, //      RO   Device Capabilities 2: 0
  DEVCTL2: 0x28, //      RO   Device Control 2: 0
  DEVSTA2: 0x2a, //      RO   Device Status 2: 0
  LNKCAP2: 0x2c, //      RO   Link Capabilities 2: supported speeds vector 7:1
  LNKCTL2: 0x30, //      RW   Link Control 2: target link speed 3:0
  LNKSTA2: 0x32, //      RO   Link Status 2: 0
  SLTCAP2: 0x34, //      RO   Slot Capabilities 2: 0
  SLTCTL2: 0x38, //      RO   Slot Control 2: 0
  SLTSTA2: 0x3a, //      RO   Slot Status 2: 0
  SIZE: 0x3c,
} as const;

/** Bits of Device Capabilities. */
export const ExpressDevCap = {
  MPS_MASK: 0x0000_0007, //     Max_Payload_Size supported: 128 << n bytes
  ROLE_BASED_ERR: 0x0000_8000, // role-based error reporting (set by every PCIe 1.1+ function)
  FLR: 0x1000_0000, //          Function Level Reset capable
} as const;

/** Bits of Device Control. */
export const ExpressDevCtl = {
  CERE: 0x0001, //         RW  Correctable Error Reporting Enable
  NFERE: 0x0002, //        RW  Non-Fatal Error Reporting Enable
  FERE: 0x0004, //         RW  Fatal Error Reporting Enable
  URRE: 0x0008, //         RW  Unsupported Request Reporting Enable
  RELAX_EN: 0x0010, //     RW  Enable Relaxed Ordering (1 at reset)
  MPS_MASK: 0x00e0, //     RW  Max_Payload_Size: 128 << n (kept across FLR)
  NOSNOOP_EN: 0x0800, //   RW  Enable No Snoop (1 at reset)
  MRRS_MASK: 0x7000, //    RW  Max_Read_Request_Size: 128 << n (512 at reset)
  BCR_FLR: 0x8000, //      RW  Initiate Function Level Reset (reads 0)
} as const;

/** Bits of Device Status. */
export const ExpressDevSta = {
  CED: 0x0001, //  RW1C Correctable Error Detected
  NFED: 0x0002, // RW1C Non-Fatal Error Detected
  FED: 0x0004, //  RW1C Fatal Error Detected
  URD: 0x0008, //  RW1C Unsupported Request Detected
} as const;

const VERSION_2 = 0x2;
const TYPE_ENDPOINT = 0x0 << 4;
const DEVCTL_RESET = ExpressDevCtl.RELAX_EN | ExpressDevCtl.NOSNOOP_EN | (2 << 12); // MRRS 512 B
const LNKCTL_WRITABLE = 0x0003 | 0x0008 | 0x0040 | 0x0080; // ASPM control, RCB, common clock, ext synch

export interface ExpressSpec {
  /** Max_Payload_Size supported in bytes: 128-4096 (default 256). */
  maxPayload?: number;
  /** Function Level Reset capable (default true). */
  flr?: boolean;
  /** Link speed generation 1-5 (2.5, 5, 8, 16, 32 GT/s; default 1). */
  linkSpeed?: number;
  /** Link width: 1, 2, 4, 8, 12, 16 or 32 lanes (default 1). */
  linkWidth?: number;
  /** Pin the capability at this config offset. */
  offset?: number;
}

export function checkExpress(spec: ExpressSpec): void {
  const mps = spec.maxPayload ?? 256;
  if (![128, 256, 512, 1024, 2048, 4096].includes(mps))
    throw new Error(`capabilities.express.maxPayload ${mps} must be 128, 256, 512, 1024, 2048 or 4096`);
  const speed = spec.linkSpeed ?? 1;
  if (!(Number.isInteger(speed) && speed >= 1 && speed <= 5))
    throw new Error(`capabilities.express.linkSpeed ${speed} must be a generation 1-5`);
  const width = spec.linkWidth ?? 1;
  if (![1, 2, 4, 8, 12, 16, 32].includes(width))
    throw new Error(`capabilities.express.linkWidth ${width} must be 1, 2, 4, 8, 12, 16 or 32`);
}

export class Express {
  readonly offset: number;
  readonly #cs: ConfigSpace;

  /** `flr` runs when the driver initiates a Function Level Reset. */
  constructor(
    cs: ConfigSpace,
    offset: number,
    next: number,
    spec: ExpressSpec,
    flr: () => void | Promise<void>,
  ) {
    this.offset = offset;
    this.#cs = cs;
    const E = ExpressCap;
    const flrCapable = spec.flr !== false;
    const speed = spec.linkSpeed ?? 1;
    const width = spec.linkWidth ?? 1;
    const mpsCode = Math.log2(spec.maxPayload ?? 256) - 7;
    cs.define(offset, 1, { value: E.ID });
    cs.define(offset + 1, 1, { value: next });
    cs.define(offset + E.FLAGS, 2, { value: VERSION_2 | TYPE_ENDPOINT });
    cs.define(offset + E.DEVCAP, 4, {
      value: mpsCode | ExpressDevCap.ROLE_BASED_ERR | (flrCapable ? ExpressDevCap.FLR : 0),
    });
    const D = ExpressDevCtl;
    cs.define(offset + E.DEVCTL, 2, {
      value: DEVCTL_RESET,
      writable:
        D.CERE |
        D.NFERE |
        D.FERE |
        D.URRE |
        D.RELAX_EN |
        D.MPS_MASK |
        D.NOSNOOP_EN |
        D.MRRS_MASK |
        (flrCapable ? D.BCR_FLR : 0),
    });
    cs.define(offset + E.DEVSTA, 2, { value: 0, rw1c: 0x000f });
    cs.define(offset + E.LNKCAP, 4, { value: speed | (width << 4) });
    cs.define(offset + E.LNKCTL, 2, { value: 0, writable: LNKCTL_WRITABLE });
    cs.define(offset + E.LNKSTA, 2, { value: speed | (width << 4) });
    cs.define(offset + E.LNKCAP2, 4, { value: ((1 << speed) - 1) << 1 });
    cs.define(offset + E.LNKCTL2, 2, { value: speed, writable: 0x000f });
    if (flrCapable) {
      cs.watch(offset + E.DEVCTL, 2, () => {
        const at = offset + E.DEVCTL;
        const v = cs.get16(at);
        if (!(v & D.BCR_FLR)) return;
        cs.set16(at, v & ~D.BCR_FLR);
        return flr();
      });
    }
  }

  /** Capture what an FLR keeps; the returned function puts it back after the reset. */
  keepAcrossFlr(): () => void {
    const cs = this.#cs;
    const devctl = this.offset + ExpressCap.DEVCTL;
    const mps = cs.get16(devctl) & ExpressDevCtl.MPS_MASK;
    const lnkctl = cs.get16(this.offset + ExpressCap.LNKCTL);
    const lnkctl2 = cs.get16(this.offset + ExpressCap.LNKCTL2);
    return () => {
      cs.set16(devctl, (cs.get16(devctl) & ~ExpressDevCtl.MPS_MASK) | mps);
      cs.set16(this.offset + ExpressCap.LNKCTL, lnkctl);
      cs.set16(this.offset + ExpressCap.LNKCTL2, lnkctl2);
    };
  }

  /** Report errors in Device Status (RW1C bits of ExpressDevSta). */
  reportErrors(bits: number): void {
    const at = this.offset + ExpressCap.DEVSTA;
    this.#cs.set16(at, this.#cs.get16(at) | (bits & 0x000f));
  }
}
