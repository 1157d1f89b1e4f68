package dns

import (
	"context"
	"fmt"
	"time"

	"kiln.dev/kiln/services/store"
)

// storeSource publishes the machine database.
type storeSource struct {
	st  *store.Store
	now func() time.Time
}

func (s storeSource) Version(ctx context.Context) (uint64, error) {
	v, err := s.st.DataVersion(ctx)
	return uint64(v), err
}

func (s storeSource) Records(ctx context.Context) ([]Record, error) {
	hosts, err := s.st.ListHosts(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing hosts: %w", err)
	}
	leases, err := s.st.Leases(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("listing leases: %w", err)
	}
	return recordsFrom(hosts, leases, s.now()), nil
}

// recordsFrom lists, in order of precedence: hosts at their reserved
// address; hosts without one at their first bound lease; then clients the
// database does not know, by the host name they sent (option 12).
func recordsFrom(hosts []store.Host, leases []store.Lease, now time.Time) []Record {
	var out []Record
	owner := map[string]int{} // MAC -> index in hosts
	published := map[int]bool{}
	for i, h := range hosts {
		for _, m := range h.MACs {
			owner[m] = i
		}
		if h.IPv4.Is4() {
			out = append(out, Record{Name: h.Name, Addr: h.IPv4, Aliases: h.Aliases})
			published[i] = true
		}
	}
	var unknown []Record
	for _, l := range leases {
		if l.State != store.LeaseBound || !now.Before(l.Expires) || l.MAC == "" {
			continue
		}
		if i, ok := owner[l.MAC]; ok {
			if !published[i] {
				out = append(out, Record{Name: hosts[i].Name, Addr: l.IP, Aliases: hosts[i].Aliases})
				published[i] = true
			}
			continue
		}
		if l.Hostname != "" {
			unknown = append(unknown, Record{Name: l.Hostname, Addr: l.IP})
		}
	}
	return append(out, unknown...)
}
