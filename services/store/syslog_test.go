package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestSyslogStoreAndQuery(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	t0 := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	src := netip.MustParseAddr("10.0.0.50")
	var batch []SyslogMessage
	for i, host := range []string{"pc-01", "pc-02", "pc-01", "pc-01"} {
		batch = append(batch, SyslogMessage{Received: t0.Add(time.Duration(i) * time.Second), Source: src, Proto: "udp",
			MAC: "52:54:00:00:00:01", Host: host, Session: int64(1 + i/3), Severity: 6, App: "kernel", Text: "line " + string(rune('a'+i))})
	}
	if err := s.AddSyslog(ctx, batch); err != nil {
		t.Fatal(err)
	}
	texts := func(ms []SyslogMessage) string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Text)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		name string
		q    SyslogQuery
		want string
	}{
		{"all, oldest first", SyslogQuery{}, "line a,line b,line c,line d"},
		{"one host", SyslogQuery{Host: "pc-01"}, "line a,line c,line d"},
		{"one session", SyslogQuery{Host: "pc-01", Session: 2}, "line d"},
		{"newest two", SyslogQuery{Limit: 2}, "line c,line d"},
		{"after an id (follow)", SyslogQuery{After: 2}, "line c,line d"},
		{"by MAC in another spelling", SyslogQuery{MAC: "52-54-00-00-00-01", Limit: 1}, "line d"},
	} {
		got, err := s.Syslog(ctx, tc.q)
		if err != nil || texts(got) != tc.want {
			t.Errorf("%s: Syslog(%+v) = %q, %v, want %q", tc.name, tc.q, texts(got), err, tc.want)
		}
	}
	got, _ := s.Syslog(ctx, SyslogQuery{Limit: 1})
	if m := got[0]; m.Source != src || !m.Received.Equal(t0.Add(3*time.Second)) || m.App != "kernel" || m.Proto != "udp" {
		t.Errorf("stored message = %+v", m)
	}
	if _, err := s.Syslog(ctx, SyslogQuery{MAC: "nonsense"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Syslog(bad MAC) = %v, want ErrInvalid", err)
	}
}

// TestPruneSyslog: age first, then the oldest until the rest fit the size bound.
func TestPruneSyslog(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	t0 := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	var batch []SyslogMessage
	for i := range 10 {
		batch = append(batch, SyslogMessage{Received: t0.Add(time.Duration(i) * time.Hour), Source: netip.MustParseAddr("10.0.0.9"), Proto: "tcp",
			Text: strings.Repeat("x", 36)}) // 64 + 36 = 100 bytes each
	}
	if err := s.AddSyslog(ctx, batch); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneSyslog(ctx, t0.Add(2*time.Hour), 0)
	if err != nil || n != 2 {
		t.Fatalf("PruneSyslog(age 2h) = %d, %v, want 2", n, err)
	}
	n, err = s.PruneSyslog(ctx, t0, 550)
	if err != nil || n != 3 {
		t.Fatalf("PruneSyslog(550 bytes) = %d, %v, want 3 (8 left of 100 bytes, 5 fit)", n, err)
	}
	left, _ := s.Syslog(ctx, SyslogQuery{})
	if len(left) != 5 || !left[0].Received.Equal(t0.Add(5*time.Hour)) {
		t.Errorf("after pruning: %d messages from %v, want the newest 5 from %v", len(left), left[0].Received, t0.Add(5*time.Hour))
	}
	if n, err := s.PruneSyslog(ctx, t0, 550); err != nil || n != 0 {
		t.Errorf("PruneSyslog again = %d, %v, want nothing to do", n, err)
	}
}

// TestDHCPOffersAndMachine: a MAC's offers up to a time, newest first; an
// address maps to its lease's MAC, else to the reserving host.
func TestDHCPOffersAndMachine(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	t0 := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	mac := "52:54:00:00:00:07"
	if evs, err := s.DHCPOffers(ctx, mac, t0, 5); err != nil || len(evs) != 0 {
		t.Errorf("DHCPOffers(no boot yet) = %v, %v, want none", evs, err)
	}
	for i, kind := range []string{EventDHCPOffer, EventDHCPAck, EventTFTP, EventDHCPOffer, EventDHCPAck} {
		if err := s.AddBootEvent(ctx, BootEvent{MAC: mac, Kind: kind, Detail: fmt.Sprint(i), Time: t0.Add(time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	details := func(evs []BootEvent) string {
		var out []string
		for _, e := range evs {
			out = append(out, e.Detail)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		at    time.Time
		limit int
		want  string
	}{
		{t0.Add(2 * time.Minute), 5, "0"}, {t0.Add(3 * time.Minute), 5, "3,0"}, {t0.Add(time.Hour), 1, "3"},
	} {
		if evs, err := s.DHCPOffers(ctx, "52-54-00-00-00-07", tc.at, tc.limit); err != nil || details(evs) != tc.want {
			t.Errorf("DHCPOffers(%v, %d) = %q, %v, want %q", tc.at, tc.limit, details(evs), err, tc.want)
		}
	}

	mustCreate(t, s, Host{Name: "pc-07", MACs: []string{mac}, IPv4: netip.MustParseAddr("10.0.0.7")})
	if m, h, err := s.MachineByIP(ctx, netip.MustParseAddr("10.0.0.7")); err != nil || m != mac || h != "pc-07" {
		t.Errorf("MachineByIP(reserved) = %q %q %v, want %s pc-07", m, h, err, mac)
	}
	if err := s.PutLease(ctx, Lease{IP: netip.MustParseAddr("10.0.0.150"), Subnet: "hall-a", MAC: "52:54:00:00:00:99", State: LeaseBound, Expires: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if m, h, err := s.MachineByIP(ctx, netip.MustParseAddr("10.0.0.150")); err != nil || m != "52:54:00:00:00:99" || h != "" {
		t.Errorf("MachineByIP(leased, unknown host) = %q %q %v", m, h, err)
	}
	if _, _, err := s.MachineByIP(ctx, netip.MustParseAddr("10.0.0.200")); !errors.Is(err, ErrNotFound) {
		t.Errorf("MachineByIP(unknown) = %v, want ErrNotFound", err)
	}
}
