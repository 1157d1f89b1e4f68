// Package pxetest holds the tier-4 test of the provisioning plane: target
// VMs network-boot from the appliance image over a private L2 segment.
//
// The appliance boots once ($KILN_IMAGE on an overlay, see package boottest)
// with a management NIC and a second NIC on a loopback dgram segment
// (qemu.L2Pair). Its config and a hosts file reach it through QEMU's fw_cfg
// (-fw_cfg name=opt/kiln/config and opt/kiln/hosts.yaml; PID 1 copies them
// to /run/kiln/fw_cfg, see init/pid1/fwcfg.go): the network section gives the
// provisioning NIC its static address, the provisioning section serves DHCP,
// TFTP and HTTP boot there, and provisioning.hosts_file registers the target
// machines (imported into the machine database before the services start).
// That is the honest simple route to register hosts in a VM whose management
// API is not reachable from the test: the same file an operator would import
// with `kiln hosts import`.
//
// Then, one after the other on the same segment:
//
//   - an OVMF target without an option ROM (OVMF's own virtio-net driver and
//     UEFI PXE): DHCP (arch 7) → TFTP ipxe.efi → iPXE's DHCP (user class
//     iPXE) → its script over HTTP;
//   - a SeaBIOS target with Debian's iPXE ROM (pxe-e1000.rom from ipxe-qemu;
//     its pxe-virtio.rom does not start on QEMU 7.2's virtio-net): iPXE's
//     DHCP → its script over HTTP. SeaBIOS prints option ROM output on the
//     serial port with -machine graphics=off.
//
// Both hosts use the kernel boot profile; the script's first line echoes
// "kiln: booting <host> with its configured kernel" (the marker on the
// target's serial console), and since the kernel file does not exist the
// script's failure path ("… failed, falling through", exit 1) follows.
//
// The test skips with a reason when the image, QEMU, OVMF or the iPXE ROM is
// missing, and with -short. Budget: one appliance boot and two target boots,
// about 2-3 minutes on two cores under TCG; every wait is bounded.
package pxetest
