// The vfio-user wire codec: bytes in, typed messages out, and back. Pure: no I/O, no fds (fds
// are only counted in frames), nothing imported from outside protocol/. Everything is
// little-endian. Decoders throw ProtocolError (a bad message) and the framer FramingError (a
// broken stream); encoders throw RangeError for values that do not fit their fields.

export * from "./capabilities.ts";
export * from "./constants.ts";
export * from "./describe.ts";
export * from "./errors.ts";
export * from "./framer.ts";
export * from "./header.ts";
export * from "./messages/device-info.ts";
export * from "./messages/dma.ts";
export * from "./messages/feature.ts";
export * from "./messages/irq.ts";
export * from "./messages/mig-data.ts";
export * from "./messages/region-access.ts";
export * from "./messages/region-cache.ts";
export * from "./messages/region-info.ts";
export * from "./messages/region-io-fds.ts";
export * from "./messages/reset.ts";
export * from "./messages/version.ts";
export * from "./messages/write-multi.ts";
export * from "./pci-config.ts";
