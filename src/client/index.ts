// The client's public entry (the package's `vfio-user-node/client` subpath): a vfio-user client for
// device tests and tools, without the server, the device framework or the device models.
export {
  ClientError,
  type ClientMemory,
  type ClientOptions,
  type RegionInfoResult,
  VfioUserClient,
} from "./client.ts";
export { CombiningWriter } from "./combining-writer.ts";
