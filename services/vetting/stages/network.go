package stages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"kiln.dev/kiln/services/vetting/verdict"
)

// Network checks every target NIC's carrier and link speed and measures
// throughput to and from the appliance through it.
type Network struct {
	Targets []NIC `json:"targets"`
	// Duration bounds each direction per NIC.
	Duration time.Duration `json:"duration"`
	// MinLinkFraction, when above 0, marks a NIC DEGRADED whose throughput
	// stays below that fraction of its link speed.
	MinLinkFraction float64 `json:"min_link_fraction,omitempty"`
	// Client moves the bytes; nil skips the throughput measurements.
	Client Throughput `json:"-"`
}

// NIC is one interface to test.
type NIC struct {
	Name string `json:"name"`
	// MinMbps is the link speed the expected spec asks for (0: none).
	MinMbps float64 `json:"min_mbps,omitempty"`
}

// Throughput moves bytes between the agent and the appliance through one
// interface for about d; protocol.Client implements it.
type Throughput interface {
	Download(ctx context.Context, iface string, d time.Duration) (bytes int64, elapsed time.Duration, err error)
	Upload(ctx context.Context, iface string, d time.Duration) (bytes int64, elapsed time.Duration, err error)
}

// Name implements Stage.
func (Network) Name() string { return "network" }

// Run implements Stage.
func (s Network) Run(ctx context.Context, env Env) ([]verdict.Measurement, error) {
	var ms []verdict.Measurement
	for i, nic := range s.Targets {
		if ctx.Err() != nil {
			return ms, ctx.Err()
		}
		env.Progress(float64(i)/float64(len(s.Targets)), nic.Name)
		ms = append(ms, s.nic(ctx, env, nic)...)
	}
	return ms, ctx.Err()
}

func (s Network) nic(ctx context.Context, env Env, nic NIC) []verdict.Measurement {
	p := "network." + nic.Name + "."
	dir := filepath.Join(env.Root, "sys/class/net", nic.Name)
	if _, err := os.Stat(dir); err != nil {
		return []verdict.Measurement{verdict.Errored(p+"carrier", fmt.Errorf("interface %s: %w", nic.Name, err))}
	}
	// carrier reads "1" with a link; EINVAL while the interface is down.
	carrier := 0.0
	if b, err := os.ReadFile(filepath.Join(dir, "carrier")); err == nil && strings.TrimSpace(string(b)) == "1" {
		carrier = 1
	}
	ms := []verdict.Measurement{verdict.Measure(p+"carrier", carrier, "",
		verdict.Must(verdict.OpEQ, 1, "the NIC has a link"))}
	if carrier == 0 {
		return ms
	}
	speed := -1.0
	if b, err := os.ReadFile(filepath.Join(dir, "speed")); err == nil {
		if n, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64); err == nil && n > 0 {
			speed = n
		}
	}
	switch {
	case speed > 0 && nic.MinMbps > 0:
		ms = append(ms, verdict.Measure(p+"link_mbps", speed, "Mb/s",
			verdict.Must(verdict.OpGE, nic.MinMbps, "the link speed the expected spec asks for")))
	case speed > 0:
		ms = append(ms, verdict.Measurement{Name: p + "link_mbps", Value: speed, Unit: "Mb/s"})
	case nic.MinMbps > 0:
		ms = append(ms, verdict.Errored(p+"link_mbps", fmt.Errorf("the driver of %s reports no link speed, so %v Mb/s cannot be checked", nic.Name, nic.MinMbps)))
	default:
		ms = append(ms, verdict.Skip(p+"link_mbps", "the driver reports no link speed (virtual NIC)"))
	}
	if s.Client == nil {
		return append(ms, verdict.Skip(p+"rx_mbps", "no appliance endpoint to measure throughput against"))
	}
	for _, dir := range []struct {
		name string
		move func(context.Context, string, time.Duration) (int64, time.Duration, error)
	}{{"rx_mbps", s.Client.Download}, {"tx_mbps", s.Client.Upload}} {
		n, elapsed, err := dir.move(ctx, nic.Name, s.Duration)
		if err != nil {
			if ctx.Err() != nil {
				return ms
			}
			ms = append(ms, verdict.Errored(p+dir.name, fmt.Errorf("moving data to the appliance through %s: %w", nic.Name, err)))
			continue
		}
		m := verdict.Measurement{Name: p + dir.name, Value: float64(n) * 8 / elapsed.Seconds() / 1e6, Unit: "Mb/s", Better: verdict.Higher}
		if s.MinLinkFraction > 0 && speed > 0 {
			m.Validators = append(m.Validators, verdict.Should(verdict.OpGE, speed*s.MinLinkFraction,
				fmt.Sprintf("at least %.0f%% of the %v Mb/s link", s.MinLinkFraction*100, speed)))
		}
		ms = append(ms, m)
	}
	return ms
}
