package console

import (
	"context"
	"fmt"
)

// Power shuts the appliance down in order (PID 1's shutdown). Both return once
// the shutdown has started; the console then goes quiet until its ctx is done.
type Power interface {
	Reboot(ctx context.Context) error
	Poweroff(ctx context.Context) error
}

// reboot is menu item 7.
func (s *session) reboot(ctx context.Context) error {
	if s.c.Power == nil {
		return fmt.Errorf("reboot: %w", errNotAvailable)
	}
	return s.power(ctx, "reboot", "rebooting", s.c.Power.Reboot)
}

// poweroff is menu item 8.
func (s *session) poweroff(ctx context.Context) error {
	if s.c.Power == nil {
		return fmt.Errorf("power off: %w", errNotAvailable)
	}
	return s.power(ctx, "power off", "powering off", s.c.Power.Poweroff)
}

// offerReboot asks whether to reboot now, after a change that takes effect on
// the next boot.
func (s *session) offerReboot(ctx context.Context) error {
	if s.c.Power == nil {
		s.printf("reboot to use it.\n")
		return nil
	}
	ok, err := s.confirm(ctx, "reboot now?")
	if err != nil {
		return err
	}
	if !ok {
		s.printf("not rebooting now; the change takes effect at the next boot.\n")
		return nil
	}
	return s.doPower(ctx, "reboot", "rebooting", s.c.Power.Reboot)
}

// power asks before a reboot or power off.
func (s *session) power(ctx context.Context, what, doing string, act func(context.Context) error) error {
	ok, err := s.confirm(ctx, what+" "+s.c.hostname()+"?")
	if err != nil {
		return err
	}
	if !ok {
		s.printf("cancelled.\n")
		return nil
	}
	return s.doPower(ctx, what, doing, act)
}

// doPower starts a reboot or power off and returns errShutdown once it has begun.
func (s *session) doPower(ctx context.Context, what, doing string, act func(context.Context) error) error {
	s.logger().Warn("operator requested " + what)
	s.printf("%s...\n", doing) // first: a real shutdown may never return
	if err := act(ctx); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return errShutdown
}
