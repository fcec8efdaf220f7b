// The device models `vfu` knows by name. A model lives in its own folder with a README holding
// its register table; add it here to make it servable from the command line.
import type { DeviceDefinition } from "../src/index.ts";
import { bochsDisplay } from "./bochs-display/index.ts";
import { edu } from "./edu/index.ts";
import { gpioIdio16 } from "./gpio-idio16/index.ts";
import { nvme } from "./nvme/index.ts";
import { pciTestdev } from "./pci-testdev/index.ts";
import { pl061 } from "./pl061/index.ts";
import { scratchpad } from "./scratchpad/index.ts";

export const deviceModels: readonly DeviceDefinition[] = [
  scratchpad,
  pl061,
  pciTestdev,
  gpioIdio16,
  nvme,
  edu,
  bochsDisplay,
];

export function findDeviceModel(name: string): DeviceDefinition | undefined {
  return deviceModels.find((d) => d.name === name);
}
