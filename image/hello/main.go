// Command hello is the baseline /init for the boot benchmark: it prints one line
// to the console and powers the machine off, so an image built with
// "kiln image build --hello-init" measures firmware + systemd-boot + kernel +
// initramfs and nothing of kiln's own.
package main

import (
	"fmt"
	"os"
	"syscall"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "kiln-baseline: %v\n", err)
	}
	// PID 1 must not exit; if power-off failed, wait for the panic=10 reboot.
	for {
		syscall.Pause()
	}
}

func run() error {
	// The kernel opens /dev/console for PID 1 when the initramfs has it; an
	// initramfs without /dev/console leaves fds 0-2 closed, so open it ourselves.
	if err := syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, ""); err != nil && err != syscall.EBUSY {
		return fmt.Errorf("mounting /dev: %w", err)
	}
	con, err := os.OpenFile("/dev/console", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening /dev/console: %w", err)
	}
	fmt.Fprintln(con, "kiln-baseline: hello")
	con.Close()
	syscall.Sync()
	return syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
