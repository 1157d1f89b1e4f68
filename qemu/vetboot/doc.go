// Package vetboot holds the tier-4 test of the vetting live image on its
// own: QEMU boots out/vet/vmlinuz and out/vet/initrd directly (-kernel,
// -initrd under SeaBIOS, TCG, 2 GiB) with a virtio disk and two NICs
// (virtio-net and e1000) on loopback dgram segments nobody answers, and a
// kernel command line naming an appliance at http://127.0.0.1:1. The
// console must show kiln-agent coming up as PID 1, the disk and NIC
// drivers loading, the DHCP wait giving up (kiln.net_wait), the appliance
// unreachable (kiln.hello_timeout) and the poweroff that follows
// (kiln.fail_delay), after which QEMU exits.
//
// The live image is found next to $KILN_IMAGE (else <repo>/out/kiln.qcow2)
// in vet/, where `make image` writes it; the test skips with the reason
// when it, QEMU or the tier-4 requirements are missing, and with -short.
// Budget: about 30 s on two cores under TCG.
package vetboot
