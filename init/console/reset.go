package console

import (
	"context"
	"fmt"
	"strings"
)

// DataWiper erases the data partition: it stops what uses /data, unmounts it and
// makes a fresh, empty filesystem (PID 1's storage code).
type DataWiper interface {
	FormatData(ctx context.Context) error
}

// resetPhrase is what the operator must type to confirm a factory reset.
func (c *Console) resetPhrase() string { return "wipe " + c.hostname() }

// factoryReset is menu item 5.
func (s *session) factoryReset(ctx context.Context) error {
	if s.c.Data == nil {
		return fmt.Errorf("factory reset: %w", errNotAvailable)
	}
	phrase := s.c.resetPhrase()
	s.printf("factory reset erases the data partition: configuration, machine database,\n")
	s.printf("leases, logs and keys. Both system slots stay; kiln boots with its defaults.\n")
	s.printf("to confirm, type exactly: %s\n", phrase)
	a, err := s.ask(ctx, "confirm: ")
	if err != nil {
		return err
	}
	if strings.TrimRight(a, "\r") != phrase {
		s.printf("cancelled: that was not %q; nothing was erased.\n", phrase)
		return nil
	}
	s.logger().Warn("operator confirmed factory reset")
	s.printf("erasing the data partition...\n")
	if err := s.c.Data.FormatData(ctx); err != nil {
		return fmt.Errorf("factory reset failed, the data partition may be partly erased (try again, or use the shell): %w", err)
	}
	s.printf("the data partition is empty.\n")
	if s.c.Power == nil {
		s.printf("reboot to finish the factory reset.\n")
		return nil
	}
	return s.doPower(ctx, "reboot", "rebooting", s.c.Power.Reboot)
}
