package console

import (
	"context"
)

// banner prints who this is and how to reach it. Every part degrades to a short
// note: the banner must appear even when the supervisor or the network is down.
func (s *session) banner(ctx context.Context) {
	if err := s.safely(func() error { s.bannerLines(ctx); return nil }); err != nil {
		s.printf("\nerror: %v\npress Enter for the recovery menu\n", err)
	}
}

func (s *session) bannerLines(ctx context.Context) {
	c := s.c
	if c.Live {
		s.printf("\n%s  kiln %s  LIVE from the ISO (nothing is kept at power-off)\n", c.hostname(), orDash(c.Version))
	} else {
		s.printf("\n%s  kiln %s  slot %s\n", c.hostname(), orDash(c.Version), orDash(string(c.Slot)))
	}

	state := "unknown"
	if c.Services != nil {
		qctx, cancel := query(ctx)
		st, err := c.Services.Status(qctx)
		cancel()
		if err != nil {
			state = "unknown (" + err.Error() + ")"
		} else {
			state = readiness(st)
		}
	}
	s.printf("status      %s\n", state)

	var urls []string
	var netErr error
	if c.Net != nil {
		ifs, err := c.Net.Interfaces()
		netErr = err
		urls = managementURLs(c.Management, ifs)
	}
	switch {
	case c.Management.HTTPSPort <= 0 && c.Management.HTTPPort <= 0:
		s.printf("management  disabled in the config (management.https_port, management.http_port)\n")
	case netErr != nil:
		s.printf("management  unknown (%v)\n", netErr)
	case len(urls) == 0:
		s.printf("management  no address yet (menu item 2 shows the interfaces)\n")
	}
	for i, u := range urls {
		label := "management"
		if i > 0 {
			label = ""
		}
		s.printf("%-10s  %s\n", label, u)
	}
	s.loginLines()
	s.printf("press Enter for the recovery menu\n")
}
