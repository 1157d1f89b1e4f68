// Package vmdisk converts kiln's raw disk image into the virtual disk formats other
// hypervisors import: VMDK (monolithicSparse for VMware Workstation/Fusion/Player and
// VirtualBox, streamOptimized inside an OVA for vSphere/ESXi, VMware and VirtualBox)
// and VHDX (Hyper-V). qcow2 stays with qemu-img, whose output is deterministic.
//
// The writers are kiln's own because qemu-img stamps random identifiers into VMDK
// (CID) and VHDX (file, data and log GUIDs) files, so two conversions of the same
// image differ. Here every identifier derives from Options.ID, every layout decision
// is fixed, and the same raw image and options give the same bytes.
//
// All writers skip all-zero grains/blocks (a kiln image is mostly empty slot and data
// space), and each format's structures follow its published specification: the
// VMware Virtual Disk Format 1.1 (hosted sparse extents, stream-optimized compressed
// extents), [MS-VHDX] 2.0, and DMTF OVF 1.0 for the OVA descriptor. qemu-img reads
// each back to the raw bytes in the tests.
package vmdisk
