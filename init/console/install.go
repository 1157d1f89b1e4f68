package console

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// Installer writes the appliance onto one of this machine's disks: the live
// ISO's "install to disk" (image/liveinstall behind image/flash's checks).
type Installer interface {
	// Targets lists the machine's disks, each with the reason it must not
	// be written, if any.
	Targets(ctx context.Context) ([]InstallTarget, error)
	// Install writes the appliance to the disk with kernel name name and
	// reads it back, reporting progress to out.
	Install(ctx context.Context, name string, out io.Writer) error
}

// InstallTarget is one disk as the install item lists it.
type InstallTarget struct {
	Name    string // kernel name: sda, nvme0n1, vda
	Summary string // path, size, transport, model, serial
	Refused string // why it must not be written ("" when it may be)
}

// install is menu item 9, shown on a live system.
func (s *session) install(ctx context.Context) error {
	if s.c.Install == nil {
		return fmt.Errorf("install to disk: %w", errNotAvailable)
	}
	qctx, cancel := query(ctx)
	targets, err := s.c.Install.Targets(qctx)
	cancel()
	if err != nil {
		return fmt.Errorf("listing the disks: %w", err)
	}
	s.printf("install kiln %s onto a disk of this machine: the disk gets both system slots\n", s.c.Version)
	s.printf("and an empty data partition; it then boots without the live medium.\n")
	usable := 0
	for _, t := range targets {
		if t.Refused != "" {
			s.printf("  %-8s %s\n           not usable: %s\n", t.Name, t.Summary, t.Refused)
			continue
		}
		usable++
		s.printf("  %-8s %s\n", t.Name, t.Summary)
	}
	if usable == 0 {
		s.printf("no disk can be installed to: attach one (at least the image's size) and try again.\n")
		return nil
	}
	a, err := s.ask(ctx, "disk to install to (its name, empty to cancel): ")
	if err != nil {
		return err
	}
	name := strings.TrimPrefix(strings.TrimSpace(a), "/dev/")
	if name == "" {
		s.printf("cancelled: nothing was written.\n")
		return nil
	}
	var target *InstallTarget
	for i := range targets {
		if targets[i].Name == name {
			target = &targets[i]
		}
	}
	switch {
	case target == nil:
		s.printf("%q is not one of the disks listed; nothing was written.\n", name)
		return nil
	case target.Refused != "":
		s.printf("refusing %s: %s\n", name, target.Refused)
		return nil
	}
	s.printf("EVERYTHING on %s will be lost:\n  %s\n", name, target.Summary)
	a, err = s.ask(ctx, fmt.Sprintf("to confirm, type the disk's name again (%s): ", name))
	if err != nil {
		return err
	}
	if strings.TrimPrefix(strings.TrimSpace(a), "/dev/") != name {
		s.printf("cancelled: that was not %q; nothing was written.\n", name)
		return nil
	}
	s.logger().Warn("operator confirmed install to disk", "disk", name)
	if err := s.c.Install.Install(ctx, name, s.out); err != nil {
		return fmt.Errorf("installing to %s failed; the disk does not hold a bootable kiln (try again, or another disk): %w", name, err)
	}
	s.printf("kiln is installed on %s. Remove the live medium (or pick %s in the firmware's\n", name, name)
	s.printf("boot menu) and reboot: the machine then boots the installed appliance.\n")
	return s.offerReboot(ctx)
}
