package stages_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/stages"
	"kiln.dev/kiln/services/vetting/verdict"
)

type nopBackend struct{}

func (nopBackend) Hello(context.Context, string, protocol.Hello) (protocol.Assignment, error) {
	return protocol.Assignment{}, nil
}
func (nopBackend) Record(context.Context, string, protocol.Message) error { return nil }

// appliance starts the real protocol server on loopback and returns a
// client of run-1.
func appliance(t *testing.T) *protocol.Client {
	t.Helper()
	tokens := protocol.NewTokens()
	tok, err := tokens.Issue("run-1", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(protocol.NewHandler(protocol.Options{Tokens: tokens, Backend: nopBackend{}}))
	t.Cleanup(srv.Close)
	return &protocol.Client{BaseURL: srv.URL, Token: tok, RunID: "run-1"}
}

func run(t *testing.T, root string, s stages.Network) verdict.StageResult {
	t.Helper()
	r := &stages.Runner{Env: stages.Env{Root: root, Logger: slog.New(slog.DiscardHandler)}}
	res := r.RunOne(context.Background(), stages.Planned{Stage: s, Timeout: time.Minute})
	for _, m := range res.Measurements {
		t.Logf("%s = %v %s %s %s", m.Name, m.Value, m.Unit, m.Status, m.Message)
	}
	return res
}

func find(res verdict.StageResult, name string) *verdict.Measurement {
	for i := range res.Measurements {
		if res.Measurements[i].Name == name {
			return &res.Measurements[i]
		}
	}
	return nil
}

// TestNetworkLoopback measures throughput to the real protocol server
// through lo, bound to it as the agent binds to each NIC.
func TestNetworkLoopback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("binding sockets to an interface (SO_BINDTODEVICE) needs root")
	}
	res := run(t, "/", stages.Network{Targets: []stages.NIC{{Name: "lo"}}, Duration: 300 * time.Millisecond,
		Client: appliance(t)})
	if res.Status != verdict.Pass {
		t.Fatalf("network stage on lo = %s (%s), want PASS", res.Status, res.Summary)
	}
	for _, name := range []string{"network.lo.rx_mbps", "network.lo.tx_mbps"} {
		if m := find(res, name); m == nil || m.Value < 8 || m.Better != verdict.Higher {
			t.Errorf("%s = %+v, want a rate above 8 Mb/s marked higher-is-better", name, m)
		}
	}
	if m := find(res, "network.lo.carrier"); m == nil || m.Status != verdict.Pass {
		t.Errorf("network.lo.carrier = %+v, want PASS", m)
	}
}

func sysNet(t *testing.T, nics map[string][2]string) string {
	t.Helper()
	root := t.TempDir()
	for name, cs := range nics {
		dir := filepath.Join(root, "sys/class/net", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for file, v := range map[string]string{"carrier": cs[0], "speed": cs[1]} {
			if v != "" {
				if err := os.WriteFile(filepath.Join(dir, file), []byte(v+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return root
}

func TestNetworkLinkChecks(t *testing.T) {
	root := sysNet(t, map[string][2]string{"eth0": {"1", "1000"}, "eth1": {"0", "-1"}, "eth2": {"1", "-1"}, "eth3": {"1", "10000"}})
	for _, tc := range []struct {
		name   string
		nic    stages.NIC
		want   verdict.Status
		metric string
		msg    string
	}{
		{"link slower than the spec", stages.NIC{Name: "eth0", MinMbps: 10000}, verdict.Fail, "network.eth0.link_mbps", "want >= 10000 Mb/s"},
		{"link as the spec says", stages.NIC{Name: "eth3", MinMbps: 10000}, verdict.Pass, "network.eth3.link_mbps", ""},
		{"no carrier", stages.NIC{Name: "eth1"}, verdict.Fail, "network.eth1.carrier", "the NIC has a link"},
		{"speed unknown but required", stages.NIC{Name: "eth2", MinMbps: 1000}, verdict.Error, "network.eth2.link_mbps", "reports no link speed"},
		{"speed unknown, none required", stages.NIC{Name: "eth2"}, verdict.Pass, "network.eth2.link_mbps", "no link speed"},
		{"missing interface is a tool error", stages.NIC{Name: "eth9"}, verdict.Error, "network.eth9.carrier", "eth9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := run(t, root, stages.Network{Targets: []stages.NIC{tc.nic}, Duration: 10 * time.Millisecond})
			m := find(res, tc.metric)
			if res.Status != tc.want || m == nil || !strings.Contains(m.Message, tc.msg) {
				t.Errorf("network (%s) = %s, %s = %+v; want %s with a message containing %q", tc.name, res.Status, tc.metric, m, tc.want, tc.msg)
			}
		})
	}
}

// TestNetworkUnreachableIsError: an appliance that cannot be reached is a
// tool (or cabling) problem, ERROR, not a NIC failure.
func TestNetworkUnreachableIsError(t *testing.T) {
	root := sysNet(t, map[string][2]string{"lo": {"1", ""}})
	c := appliance(t)
	c.BaseURL = "http://127.0.0.1:1" // nothing listens there
	res := run(t, root, stages.Network{Targets: []stages.NIC{{Name: "lo"}}, Duration: 50 * time.Millisecond, Client: c})
	if res.Status != verdict.Error {
		t.Errorf("network stage with the appliance unreachable = %s (%s), want ERROR", res.Status, res.Summary)
	}
	if m := find(res, "network.lo.rx_mbps"); m == nil || m.Status != verdict.Error {
		t.Errorf("network.lo.rx_mbps = %+v, want ERROR", m)
	}
}
