package console

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"kiln.dev/kiln/partitions"
)

// SlotController is the boot-entry side of the A/B slots (the OTA code).
type SlotController interface {
	// Slots describes both slots as their boot entries stand now.
	Slots(ctx context.Context) ([]Slot, error)
	// RollBack makes slot to the one that boots next (without rebooting).
	RollBack(ctx context.Context, to partitions.Slot) error
}

// Slot is one root slot and its boot entry (the type is shared with ota/slots,
// which fills it in).
type Slot = partitions.SlotEntry

// tries describes the entry's boot counting for an operator.
func tries(sl Slot) string {
	switch {
	case sl.Entry == "":
		return "-"
	case !sl.Counting:
		return "committed"
	case sl.TriesLeft == 0:
		return fmt.Sprintf("no tries left, %d used (will not boot)", sl.TriesDone)
	}
	return fmt.Sprintf("%d left, %d used", sl.TriesLeft, sl.TriesDone)
}

// rollBack is menu item 4.
func (s *session) rollBack(ctx context.Context) error {
	if s.c.Slots == nil {
		return fmt.Errorf("roll back: %w", errNotAvailable)
	}
	qctx, cancel := query(ctx)
	slots, err := s.c.Slots.Slots(qctx)
	cancel()
	if err != nil {
		return fmt.Errorf("reading the boot entries: %w", err)
	}
	running := s.c.Slot
	if running == "" {
		return errors.New("the running slot is unknown (no kiln.slot= on the kernel command line), so there is no other slot to name")
	}
	target := running.Other()

	tw := tabwriter.NewWriter(s.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  SLOT\tENTRY\tVERSION\tTRIES")
	var other *Slot
	for i, sl := range slots {
		mark := " "
		if sl.Name == running {
			mark = "*"
		}
		if sl.Name == target {
			other = &slots[i]
		}
		fmt.Fprintf(tw, "%s %s\t%s\t%s\t%s\n", mark, sl.Name, orDash(sl.Entry), orDash(sl.Version), tries(sl))
	}
	tw.Flush()
	s.printf("* = running now\n")
	if other == nil || other.Entry == "" {
		s.printf("slot %s has no boot entry, so there is nothing to roll back to.\n", target)
		return nil
	}

	a, err := s.ask(ctx, fmt.Sprintf("type yes to boot slot %s (version %s) next: ", target, orDash(other.Version)))
	if err != nil {
		return err
	}
	if strings.TrimSpace(a) != "yes" {
		s.printf("cancelled: nothing changed.\n")
		return nil
	}
	s.logger().Warn("operator rolled back", "from", running, "to", target)
	if err := s.c.Slots.RollBack(ctx, target); err != nil {
		return fmt.Errorf("rolling back to slot %s: %w", target, err)
	}
	s.printf("slot %s boots next.\n", target)
	return s.offerReboot(ctx)
}
