// `serve(definition, { socket })`: one call that builds a device from its definition and serves it
// on a UNIX socket, for a program that embeds the server (each `vfu serve` group is one such
// call). The option values are checked and the defaults filled in before anything listens, so a
// bad value throws without leaving a socket behind.
import type { DeviceDefinition } from "../device/definition.ts";
import { Device, type DeviceModel } from "../device/device.ts";
import { resolveOptions } from "../device/options.ts";
import { Endpoint, type EndpointOptions } from "./server.ts";

export interface ServeOptions extends Omit<EndpointOptions, "socketPath"> {
  /** Path of the UNIX socket to listen on (a stale socket there is replaced, nothing else is). */
  socket: string;
  /** Device option values, as `--set key=value` gives them; declared defaults fill the rest. */
  options?: Readonly<Record<string, string>>;
}

export interface ServedDevice {
  readonly socketPath: string;
  readonly device: DeviceModel;
  readonly endpoint: Endpoint;
  /** Stop listening, drop the client (if any), release the device and remove the socket file. */
  close(): Promise<void>;
}

/** Serve `definition` on `opts.socket`. Throws (and listens on nothing) when an option is unknown
 * or refused, when the device cannot be built, or when the socket path is taken. */
export function serve(definition: DeviceDefinition, opts: ServeOptions): ServedDevice {
  const { socket, options: given, ...endpointOptions } = opts;
  const options = resolveOptions(definition, given ?? {});
  const endpoint = new Endpoint((dma, log) => new Device(definition, { dma, log, options }), {
    ...endpointOptions,
    socketPath: socket,
  });
  return {
    socketPath: socket,
    device: endpoint.device,
    endpoint,
    close: () => endpoint.close(),
  };
}
