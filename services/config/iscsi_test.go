package config

import "testing"

func TestISCSIReserveBytes(t *testing.T) {
	const G = int64(1) << 30
	for _, tc := range []struct {
		reserve string
		total   int64
		want    int64
	}{
		{"", 100 * G, 10 * G},
		{"10%", 100 * G, 10 * G},
		{"25%", 100 * G, 25 * G},
		{"", 100 << 20, MinISCSIReserve}, // the floor
		{"1%", 1 * G, MinISCSIReserve},
		{"4G", 100 * G, 4 * G},
		{"512M", 1 * G, 512 << 20},
		{"68719476736", 100 * G, 64 * G},
		{"junk", 100 * G, 10 * G}, // refused by Validate; the quota stays the default
	} {
		if got := (ISCSIService{Reserve: tc.reserve}).ReserveBytes(tc.total); got != tc.want {
			t.Errorf("ISCSIService{Reserve: %q}.ReserveBytes(%d) = %d, want %d", tc.reserve, tc.total, got, tc.want)
		}
	}
}
