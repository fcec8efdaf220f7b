// The public API of vfio-user-node: everything a device model, an embedding program or a test
// needs, and nothing else. Device models (devices/**) and the `vfu` command (cli/) import only
// this file. Published as the package's root; `vfio-user-node/protocol` is the wire codec alone
// (no native addon) and `vfio-user-node/client` the client alone.

export { MAX_MAP_LENGTH } from "../native/index.ts";
export * from "../protocol/index.ts";
export * from "./client/index.ts";
export type { Deferred } from "./device/deferred.ts";
export {
  type BehaviourOf,
  type Bus,
  type BusHooks,
  type Clock,
  type DeviceBehaviour,
  type DeviceContext,
  type DeviceDefinition,
  type DeviceInstance,
  type DeviceSpec,
  defineDevice,
  type IrqApi,
} from "./device/definition.ts";
export { Device, type DeviceModel, type DeviceSetup, type WriteCombineStats } from "./device/device.ts";
export { IrqController, type IrqKind, type IrqSpec, type VectorCounters } from "./device/irq.ts";
export {
  type BooleanOptionSpec,
  describeAccepted,
  type EnumOptionSpec,
  formatOptions,
  formatSize,
  type IntegerOptionSpec,
  OPTION_KINDS,
  type OptionDecls,
  OptionError,
  type OptionInput,
  type OptionKind,
  type OptionRule,
  type OptionSpec,
  type OptionValueOf,
  type OptionValues,
  type PathOptionSpec,
  parseSize,
  resolveOptions,
  type SizeOptionSpec,
  type StringOptionSpec,
} from "./device/options.ts";
export {
  CACHE_ATTRS,
  type CacheAttr,
  leBytes,
  leValue,
  type MmapAreaSpec,
  type MmapView,
  type ReadResult,
  Region,
  type RegionHandlers,
  type RegionSpec,
} from "./device/region.ts";
export { type FlushReason, WC_BUFFER_BYTES } from "./device/write-combine.ts";
export { AddressSpace, MAX_DMA_LENGTH, type MapRequest } from "./iommu/address-space.ts";
export type { Area } from "./iommu/area.ts";
export type { BackingKind } from "./iommu/backing.ts";
export { DirtyLog, type DirtyRange, MAX_DIRTY_RANGES } from "./iommu/dirty.ts";
export {
  DeviceDma,
  type DmaAccess,
  type DmaApi,
  type DmaPort,
  type DmaSegment,
  type DmaSgList,
  type DmaUnmapEvent,
  type DmaUnmapListener,
  type DmaView,
} from "./iommu/dma.ts";
export { FAULT_POINTS, type FaultPoint, faultInjection, InjectedFault } from "./iommu/fault-injection.ts";
export { DMA_FAULT_KINDS, DmaFault, type DmaFaultKind } from "./iommu/faults.ts";
export { type PeerRegistration, PeerRegistry, type PeerTarget, peers } from "./iommu/peers.ts";
export { BarBits, type BarSpec, type RomSpec } from "./pci/bar.ts";
export { ExpressCap, ExpressDevCtl, ExpressDevSta, type ExpressSpec } from "./pci/capabilities/express.ts";
export { type DsnSpec, ExtCap, type VsecSpec } from "./pci/capabilities/ext.ts";
export { MsiCap, MsiControl, type MsiSpec } from "./pci/capabilities/msi.ts";
export {
  MSIX_ENTRY_MASKED,
  MsixCap,
  MsixControl,
  MsixEntry,
  type MsixSpec,
} from "./pci/capabilities/msix.ts";
export { PmCap, PmCsr, type PmSpec, PowerState } from "./pci/capabilities/pm.ts";
export { VendorCap, type VendorCapSpec } from "./pci/capabilities/vendor.ts";
export { ConfigSpace } from "./pci/config-space.ts";
export { PciCommand, PciHeader, type PciIds, PciStatus } from "./pci/header.ts";
export type { PciIrqApi, PciIrqMode } from "./pci/interrupts.ts";
export { type DumpOptions, dumpConfigSpace, formatLspciDump } from "./pci/lspci.ts";
export {
  definePciDevice,
  layoutPci,
  type PciCapabilities,
  PciDevice,
  type PciDeviceBehaviour,
  type PciDeviceContext,
  type PciDeviceDefinition,
  type PciDeviceInstance,
  type PciDeviceSpec,
  type PciLayout,
  type PciResetKind,
} from "./pci/pci-device.ts";
export type { PciFunction, PciFunctionApi } from "./pci/pci-function.ts";
export {
  type DtClock,
  type DtInterrupt,
  DtIrqType,
  type DtPropertyValue,
  type DtReg,
  formatDescriptionJson,
  type InterruptSense,
  type PlatformDescription,
  renderDts,
} from "./platform/device-tree.ts";
export {
  definePlatformDevice,
  describeDevice,
  type InterruptLineSpec,
  isPlatformDeviceDefinition,
  type MmioRegionSpec,
  PlatformDevice,
  type PlatformDeviceDefinition,
  type PlatformDeviceSpec,
} from "./platform/platform-device.ts";
export { REGION_TYPE_VENDOR_BIT, VFU_REGION_TYPE, VfuRegionSubtype } from "./platform/region-type.ts";
export { Limits } from "./server/limits.ts";
export { type ServedDevice, type ServeOptions, serve } from "./server/serve.ts";
export {
  type DeviceFactory,
  Endpoint,
  type EndpointOptions,
  Server,
  serveConnection,
} from "./server/server.ts";
export type { Session } from "./server/session.ts";
export type { Connection, ReceivedFrame } from "./transport/connection.ts";
export { createMemoryPair, MemoryConnection } from "./transport/memory-pair.ts";
export { RequestError, RequestLimits } from "./transport/request-engine.ts";
export { ControlFifo, openControlChannel } from "./util/control-fifo.ts";
export { VfuError } from "./util/errors.ts";
export {
  type Logger,
  type LogLevel,
  MemorySink,
  SinkLogger,
  silentLogger,
  stderrLogger,
} from "./util/log.ts";
export { signalOnParentExit } from "./util/parent-death.ts";
