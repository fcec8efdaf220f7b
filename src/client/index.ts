// The client's public entry (the package's `vfio-user-node/client` subpath): a vfio-user client for
// device tests and tools, without the server, the device framework or the device models.
export {
  type BarKind,
  type BarSizing,
  ClientDefaults,
  ClientError,
  type ClientMemory,
  type ClientOptions,
  type DmaMapRequest,
  type MsiVectors,
  type PciCapability,
  type RegionInfoResult,
  RegionMapping,
  VfioUserClient,
} from "./client.ts";
export { CombiningWriter } from "./combining-writer.ts";
