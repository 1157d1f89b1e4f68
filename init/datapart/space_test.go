package datapart

import (
	"strings"
	"testing"
)

func TestSpaceFull(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		s    Space
		want bool
	}{
		{Space{Free: 100 * mib, Total: 128 * mib}, false},
		{Space{Free: 31 * mib, Total: 128 * mib}, true},  // under 32 MiB
		{Space{Free: 40 * mib, Total: 1024 * mib}, true}, // under 5 %
		{Space{Free: 60 * mib, Total: 1024 * mib}, false},
		{Space{Free: 0, Total: 0}, true},
	} {
		if got := tc.s.Full(); got != tc.want {
			t.Errorf("%+v.Full() = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestFullProblem(t *testing.T) {
	got := Space{Free: 3 << 20, Total: 128 << 20}.FullProblem("/data")
	for _, want := range []string{"data partition is full (3 MiB free of 128 MiB)", "recovery menu", "/data/log", "/data/state", "bigger disk"} {
		if !strings.Contains(got, want) {
			t.Errorf("FullProblem() = %q, want it to mention %q", got, want)
		}
	}
}
