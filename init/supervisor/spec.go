package supervisor

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Spec describes one supervised service.
type Spec struct {
	// Name identifies the service in status, logs and file names: lower-case
	// letters, digits and '-'.
	Name string
	// Args are the arguments after Options.Exe, for kiln
	// "service <name> --config F --state DIR --run DIR".
	Args []string
	// Env holds extra KEY=VALUE entries on top of Options.Env.
	Env []string
	// Deps name services that must be ready before this one starts.
	Deps []string
	// Enabled services are started; disabled ones are only listed in Status.
	Enabled bool
	// Watchdog, when positive, requires WATCHDOG=1 at least this often once the
	// service is ready; the child gets WATCHDOG_USEC and a late one is restarted.
	Watchdog time.Duration
}

// ErrSpec is wrapped by every problem New finds in the service specs.
var ErrSpec = errors.New("invalid service spec")

// order validates specs and returns them in start order: every service after
// its dependencies, otherwise in the order given.
func order(specs []Spec) ([]Spec, error) {
	byName := make(map[string]Spec, len(specs))
	for _, sp := range specs {
		if !validName(sp.Name) {
			return nil, fmt.Errorf("%w: service name %q: use lower-case letters, digits and '-'", ErrSpec, sp.Name)
		}
		if _, dup := byName[sp.Name]; dup {
			return nil, fmt.Errorf("%w: service %q is listed twice", ErrSpec, sp.Name)
		}
		byName[sp.Name] = sp
	}
	for _, sp := range specs {
		for _, d := range sp.Deps {
			dep, ok := byName[d]
			switch {
			case !ok:
				return nil, fmt.Errorf("%w: service %q depends on %q, which does not exist", ErrSpec, sp.Name, d)
			case d == sp.Name:
				return nil, fmt.Errorf("%w: service %q depends on itself", ErrSpec, sp.Name)
			case sp.Enabled && !dep.Enabled:
				return nil, fmt.Errorf("%w: service %q needs %q, which is disabled (enable %s or disable %s)", ErrSpec, sp.Name, d, d, sp.Name)
			}
		}
	}
	// Kahn's algorithm, picking the earliest listed service among the startable ones.
	done := make(map[string]bool, len(specs))
	out := make([]Spec, 0, len(specs))
	for len(out) < len(specs) {
		progressed := false
		for _, sp := range specs {
			if done[sp.Name] || !depsIn(sp, done) {
				continue
			}
			done[sp.Name] = true
			out = append(out, sp)
			progressed = true
			break
		}
		if !progressed {
			var left []string
			for _, sp := range specs {
				if !done[sp.Name] {
					left = append(left, sp.Name)
				}
			}
			return nil, fmt.Errorf("%w: dependency cycle among %s", ErrSpec, strings.Join(left, ", "))
		}
	}
	return out, nil
}

func depsIn(sp Spec, done map[string]bool) bool {
	for _, d := range sp.Deps {
		if !done[d] {
			return false
		}
	}
	return true
}

func validName(n string) bool {
	if n == "" || len(n) > 32 {
		return false
	}
	for _, r := range n {
		if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z') {
			return false
		}
	}
	return true
}
