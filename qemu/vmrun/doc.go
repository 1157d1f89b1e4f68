// Package vmrun is kiln vm run: it boots a kiln image in QEMU (TCG, OVMF
// or SeaBIOS) for an operator, with the serial console on the terminal and
// Ctrl-A escapes, writes kept in a qcow2 overlay whose data partition
// survives an image rebuild, and optionally vetting target VMs on a
// private segment that network-boot from the appliance.
package vmrun
