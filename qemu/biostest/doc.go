// Package biostest holds the tier-4 tests of legacy BIOS boot: the built image
// under QEMU's SeaBIOS, where the MBR's GRUB boot code loads the core image from
// the BIOS boot partition and grub.cfg boots the same entries systemd-boot does
// under OVMF. One appliance goes through boot, an OTA update committed after
// its health checks, a health rollback and a boot-counting fallback, with the
// bundles and the API client of package qemu/otatest.
package biostest
