package syslog

import (
	"testing"
	"time"

	"kiln.dev/kiln/services/store"
)

func TestSessionStart(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	// offer builds an event; the tables list offers oldest first for reading.
	offer := func(id int64, after time.Duration, detail string) store.BootEvent {
		return store.BootEvent{ID: id, Kind: store.EventDHCPOffer, Time: t0.Add(after), Detail: detail}
	}
	const (
		firmware = "ip=10.0.0.100 subnet=hall-a file=ipxe.efi arch=7"
		ipxe     = "ip=10.0.0.100 subnet=hall-a file=http://10.0.0.1:8080/boot/52-54-00-aa-bb-cc.ipxe arch=7 ipxe"
		os       = "ip=10.0.0.100 subnet=hall-a"
	)
	for _, tc := range []struct {
		name   string
		offers []store.BootEvent // oldest first
		want   int64
	}{
		{"no offers", nil, 0},
		{"one offer", []store.BootEvent{offer(5, 0, os)}, 5},
		{"PXE chain is one session", []store.BootEvent{offer(1, 0, firmware), offer(2, 5*time.Second, ipxe), offer(3, 3*time.Minute, os)}, 1},
		{"second network boot starts a new one", []store.BootEvent{offer(1, 0, firmware), offer(2, 5*time.Second, ipxe), offer(3, time.Minute, os),
			offer(4, 2*time.Minute, firmware), offer(5, 2*time.Minute+5*time.Second, ipxe)}, 4},
		{"disk boots: a gap starts one", []store.BootEvent{offer(1, 0, os), offer(2, time.Hour, os)}, 2},
		{"OS asking again soon continues", []store.BootEvent{offer(1, 0, os), offer(2, time.Minute, os), offer(3, 2*time.Minute, os)}, 1},
		{"iPXE alone after a gap", []store.BootEvent{offer(1, 0, firmware), offer(2, time.Hour, ipxe), offer(3, time.Hour+time.Minute, os)}, 2},
		{"lookback exhausted: oldest known", []store.BootEvent{offer(8, 0, ipxe), offer(9, time.Second, os)}, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			newest := make([]store.BootEvent, len(tc.offers))
			for i, o := range tc.offers {
				newest[len(tc.offers)-1-i] = o
			}
			if got := SessionStart(newest); got != tc.want {
				t.Errorf("SessionStart(%s) = %d, want %d", tc.name, got, tc.want)
			}
		})
	}
}
