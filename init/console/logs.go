package console

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// logs is menu item 3: pick a service, show its last lines, optionally follow.
func (s *session) logs(ctx context.Context) error {
	if s.c.Services == nil {
		return fmt.Errorf("service logs: %w", errNotAvailable)
	}
	name, err := s.pickService(ctx)
	if err != nil || name == "" {
		return err
	}
	n := s.c.LogLines
	if n <= 0 {
		n = DefaultLogLines
	}
	follow, err := s.confirm(ctx, fmt.Sprintf("keep following %s after its last %d lines?", name, n))
	if err != nil {
		return err
	}
	if !follow {
		s.printf("--- last %d lines of %s ---\n", n, name)
		qctx, cancel := query(ctx)
		defer cancel()
		if err := s.c.Services.Logs(qctx, name, n, false, s.out); err != nil {
			return fmt.Errorf("reading the log of %s: %w", name, err)
		}
		s.printf("--- end of %s ---\n", name)
		return nil
	}
	return s.follow(ctx, name, n)
}

// follow streams a service's log until the operator presses Enter or Ctrl-C,
// or the stream ends by itself.
func (s *session) follow(ctx context.Context, name string, n int) error {
	s.printf("--- last %d lines of %s, then new ones; press Enter to stop ---\n", n, name)
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- s.safely(func() error { return s.c.Services.Logs(fctx, name, n, true, s.out) })
	}()

	select {
	case r := <-s.in.next():
		stop()
		<-done // the stream writes nothing more once Logs returned
		if _, err := s.in.take(r); errors.Is(err, errNoInput) {
			return err
		}
		s.printf("--- stopped following %s ---\n", name)
		return nil
	case err := <-done:
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("following the log of %s: %w", name, err)
		}
		s.printf("--- the log of %s ended ---\n", name)
		return nil
	case <-ctx.Done():
		stop()
		<-done
		return ctx.Err()
	}
}

// pickService lists the services and returns the one chosen by number or name;
// "" when the operator cancels with an empty line or Ctrl-C.
func (s *session) pickService(ctx context.Context) (string, error) {
	qctx, cancel := query(ctx)
	st, err := s.c.Services.Status(qctx)
	cancel()
	var names []string
	if err != nil {
		s.printf("cannot list services (%v); type a service name.\n", err)
	} else {
		for i, sv := range st.Services {
			s.printf("  %2d  %s\n", i+1, sv.Name)
			names = append(names, sv.Name)
		}
	}
	for {
		a, err := s.ask(ctx, "service (number or name, Enter to go back): ")
		if errors.Is(err, errInterrupt) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		a = strings.TrimSpace(a)
		if a == "" {
			return "", nil
		}
		if i, err := strconv.Atoi(a); err == nil && i >= 1 && i <= len(names) {
			return names[i-1], nil
		}
		for _, n := range names {
			if n == a {
				return n, nil
			}
		}
		if len(names) == 0 && !strings.ContainsAny(a, " /") {
			return a, nil // no list to check against; let the supervisor judge
		}
		s.printf("%q is not one of the services listed: type its number (1-%d) or its name.\n", a, len(names))
	}
}
