package stages

import (
	"fmt"
	"time"
)

// Profile is a named set of stage settings and timeouts. Storage targets,
// NICs, SMART and the throughput client are filled in by Plan from the
// machine.
type Profile struct {
	Name    string  `json:"name"`
	CPU     CPU     `json:"cpu"`
	Memory  Memory  `json:"memory"`
	Storage Storage `json:"storage"`
	Network Network `json:"network"`
	// Timeouts per stage; zero fields are derived from the durations.
	Timeouts Timeouts `json:"timeouts"`
	// Stages lists which stages run, in order (default: cpu, memory,
	// storage, network).
	Stages []string `json:"stages,omitempty"`
}

// Timeouts bound each stage's wall time.
type Timeouts struct {
	CPU     time.Duration `json:"cpu,omitempty"`
	Memory  time.Duration `json:"memory,omitempty"`
	Storage time.Duration `json:"storage,omitempty"`
	Network time.Duration `json:"network,omitempty"`
}

// Profile names.
const (
	Quick    = "quick"
	Standard = "standard"
	Extended = "extended"
)

// DefaultStages is the stage order.
var DefaultStages = []string{"cpu", "memory", "storage", "network"}

// ProfileByName returns a built-in profile:
//
//   - quick: minutes — CPU 10 s, half the free memory once with the random
//     and address patterns, 5 s per storage phase, 3 s per network direction;
//   - standard: CPU 2 min, 90 % of free memory with all patterns, 30 s per
//     storage phase, 10 s per direction;
//   - extended: hours — CPU 30 min, 90 % of free memory with all patterns
//     four times, 2 min per storage phase, 60 s per direction.
func ProfileByName(name string) (Profile, error) {
	switch name {
	case Quick:
		return Profile{Name: Quick,
			CPU:      CPU{Duration: 10 * time.Second},
			Memory:   Memory{Fraction: 0.5, Passes: 1, Patterns: []string{"random", "address"}},
			Storage:  Storage{Duration: 5 * time.Second},
			Network:  Network{Duration: 3 * time.Second},
			Timeouts: Timeouts{Memory: 15 * time.Minute},
		}, nil
	case Standard:
		return Profile{Name: Standard,
			CPU:      CPU{Duration: 2 * time.Minute},
			Memory:   Memory{Fraction: 0.9, Passes: 1},
			Storage:  Storage{Duration: 30 * time.Second},
			Network:  Network{Duration: 10 * time.Second},
			Timeouts: Timeouts{Memory: 2 * time.Hour},
		}, nil
	case Extended:
		return Profile{Name: Extended,
			CPU:      CPU{Duration: 30 * time.Minute},
			Memory:   Memory{Fraction: 0.9, Passes: 4},
			Storage:  Storage{Duration: 2 * time.Minute},
			Network:  Network{Duration: time.Minute},
			Timeouts: Timeouts{Memory: 12 * time.Hour},
		}, nil
	}
	return Profile{}, fmt.Errorf("unknown profile %q (use quick, standard or extended)", name)
}

// Machine is what Plan needs to know about the host under test.
type Machine struct {
	Disks []Target
	NICs  []NIC
	SMART SMARTReader
	// Throughput reaches the appliance; nil skips throughput.
	Throughput Throughput
	// Wipeable is the run's permission to overwrite the disks.
	Wipeable bool
}

// Plan returns the profile's stages for the machine with their timeouts.
// Profile targets, when set, win over the machine's (tests use files and
// loopback). Whether storage writes follows Machine.Wipeable alone — the
// run's permission — whatever the profile says.
func Plan(p Profile, m Machine) ([]Planned, error) {
	names := p.Stages
	if len(names) == 0 {
		names = DefaultStages
	}
	var out []Planned
	for _, name := range names {
		switch name {
		case "cpu":
			t := p.Timeouts.CPU
			if t == 0 {
				t = 2*p.CPU.Duration + 30*time.Second
			}
			out = append(out, Planned{Stage: p.CPU, Timeout: t})
		case "memory":
			t := p.Timeouts.Memory
			if t == 0 {
				t = 30 * time.Minute
			}
			out = append(out, Planned{Stage: p.Memory, Timeout: t})
		case "storage":
			s := p.Storage
			if len(s.Targets) == 0 {
				s.Targets = m.Disks
			}
			if s.SMART == nil {
				s.SMART = m.SMART
			}
			// Writing needs the run's permission as well as the profile's.
			s.Destructive = m.Wipeable
			t := p.Timeouts.Storage
			if t == 0 {
				phases := 2
				if s.Destructive {
					phases = 4 // write, then a verify of what was written
				}
				t = time.Duration(len(s.Targets)*phases)*s.Duration*2 + time.Minute
			}
			out = append(out, Planned{Stage: s, Timeout: t})
		case "network":
			n := p.Network
			if len(n.Targets) == 0 {
				n.Targets = m.NICs
			}
			if n.Client == nil {
				n.Client = m.Throughput
			}
			t := p.Timeouts.Network
			if t == 0 {
				t = time.Duration(len(n.Targets)*2)*n.Duration*2 + 30*time.Second
			}
			out = append(out, Planned{Stage: n, Timeout: t})
		default:
			return nil, fmt.Errorf("unknown stage %q in profile %s (use cpu, memory, storage, network)", name, p.Name)
		}
	}
	return out, nil
}
