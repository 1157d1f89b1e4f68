package console

import (
	"net/netip"
	"testing"
)

func TestInterfaceState(t *testing.T) {
	tests := []struct {
		i    Interface
		want string
	}{
		{Interface{}, "down"},
		{Interface{Up: true}, "up, no carrier"},
		{Interface{Up: true, Carrier: true}, "up"},
		{Interface{Up: true, Loopback: true}, "up"},
	}
	for _, tt := range tests {
		if got := tt.i.State(); got != tt.want {
			t.Errorf("%+v.State() = %q, want %q", tt.i, got, tt.want)
		}
	}
}

// TestNetInterfaces reads this machine's interfaces: every Linux network
// namespace has lo with 127.0.0.1/8.
func TestNetInterfaces(t *testing.T) {
	ifs, err := NetInterfaces{}.Interfaces()
	if err != nil {
		t.Fatalf("NetInterfaces.Interfaces() error: %v", err)
	}
	for _, i := range ifs {
		if !i.Loopback {
			continue
		}
		for _, p := range i.Addrs {
			if p == netip.MustParsePrefix("127.0.0.1/8") {
				return
			}
		}
		t.Skipf("loopback %s has no 127.0.0.1/8 here (addresses %v); cannot check", i.Name, i.Addrs)
	}
	t.Skipf("no loopback interface in this network namespace (%d interfaces)", len(ifs))
}
