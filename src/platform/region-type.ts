// The project's own region type, carried in a VFIO_REGION_INFO_CAP_TYPE capability (id 2) so a
// client can find a device-specific region by what it holds rather than by its index.
//
// VFIO region types with bit 31 set are vendor types: the kernel's PCI drivers put a PCI vendor ID
// in the low 16 bits. vfio-user-node is not a PCI vendor, and these regions appear only on
// PLATFORM devices, so the low half is the project's own tag 0x5646 ("VF", as in VFio-user-node)
// and carries no vendor meaning. Subtypes are numbered by this project:
//
//   type 0x8000_5646  subtype 1  DEVICE_TREE  the device's description as device-tree source
//                                              (UTF-8 DTS text, read-only, exactly `size` bytes,
//                                              no terminating NUL; any access width)
//
// A client that does not know the type ignores the region, as the protocol asks.
// This file imports nothing so the client can use it without the platform layer.

/** VFIO_REGION_TYPE_PCI_VENDOR_TYPE: the vendor-type bit of a region type. */
export const REGION_TYPE_VENDOR_BIT = 0x8000_0000;

/** The type of every region this project defines: the vendor bit | 0x5646 ("VF"). */
export const VFU_REGION_TYPE = (REGION_TYPE_VENDOR_BIT | 0x5646) >>> 0;

/** Subtypes of `VFU_REGION_TYPE`. */
export const VfuRegionSubtype = {
  /** The device-tree source (DTS text) describing a platform device. */
  DEVICE_TREE: 1,
} as const;
