package tftp

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
)

func TestStoreEvents(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const mac = "52:54:00:00:00:0a"
	if _, err := st.CreateHost(ctx, store.Host{Name: "node1", MACs: []string{mac}, IPv4: netip.MustParseAddr("10.0.0.10")}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutLease(ctx, store.Lease{IP: netip.MustParseAddr("10.0.0.60"), Subnet: "a", MAC: mac, State: store.LeaseBound,
		Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	sink := storeEvents{st}
	at := time.Unix(1_700_000_000, 0)
	for _, ev := range []Event{
		{Time: at, Client: netip.MustParseAddr("10.0.0.60"), File: "ipxe.efi", Bytes: 1000, Duration: 1500 * time.Microsecond}, // by lease
		{Time: at.Add(time.Second), Client: netip.MustParseAddr("10.0.0.10"), File: "x.efi", Err: "file not found"},            // by reservation
	} {
		if err := sink.TFTPEvent(ctx, ev); err != nil {
			t.Errorf("TFTPEvent(%+v) = %v", ev, err)
		}
	}
	if err := sink.TFTPEvent(ctx, Event{Client: netip.MustParseAddr("10.9.9.9"), File: "a"}); err == nil {
		t.Errorf("TFTPEvent from an address with no lease or reservation = nil, want an error")
	}
	evs, err := st.BootEvents(ctx, mac, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.Kind+"|"+e.Host+"|"+e.Detail)
	}
	want := []string{"tftp|node1|x.efi: file not found", "tftp|node1|ipxe.efi: 1000 bytes in 2ms"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("stored TFTP events = %q, want %q", got, want)
	}
}

func TestOptionsFromConfig(t *testing.T) {
	var c config.Config
	if got, want := OptionsFromConfig(c), DefaultOptions(); got.Listen != want.Listen || got.Root != want.Root ||
		got.MaxWindowSize != want.MaxWindowSize || got.MaxTransfers != want.MaxTransfers || got.MaxPerClient != want.MaxPerClient {
		t.Errorf("OptionsFromConfig(empty) = %+v, want the defaults %+v", got, want)
	}
	c.Provisioning.TFTP = config.TFTPService{Listen: "10.0.0.1:6969", Root: "/srv/tftp", MaxBlockSize: 1428, MaxWindowSize: 8, MaxTransfers: 10, MaxPerClient: 2}
	got := OptionsFromConfig(c)
	if got.Listen != "10.0.0.1:6969" || got.Root != "/srv/tftp" || got.MaxBlockSize != 1428 || got.MaxWindowSize != 8 ||
		got.MaxTransfers != 10 || got.MaxPerClient != 2 {
		t.Errorf("OptionsFromConfig(%+v) = %+v", c.Provisioning.TFTP, got)
	}
}
