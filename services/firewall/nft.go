package firewall

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Banner blocks a source address for a while. The management API calls it
// for sources of repeated authentication failures; *Firewall implements it.
type Banner interface {
	Ban(ctx context.Context, addr netip.Addr, d time.Duration) error
}

// ErrNotActive is returned by Ban when the kiln table does not exist (the
// network is not managed by kiln, so there is no firewall to ban in).
var ErrNotActive = errors.New("the kiln firewall is not active")

// MaxBan bounds one ban; longer requests are shortened to it.
const MaxBan = 7 * 24 * time.Hour

// Firewall applies rulesets to one network namespace's nf_tables and edits
// the ban set. It is safe for concurrent use.
type Firewall struct {
	// netnsFd is the namespace (-1: the caller's).
	netnsFd int

	// mu serialises transactions.
	mu sync.Mutex
}

// New returns a Firewall for the network namespace open at netnsFd, or for
// the process's own namespace when netnsFd is -1.
func New(netnsFd int) *Firewall { return &Firewall{netnsFd: netnsFd} }

func (f *Firewall) conn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if f.netnsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(f.netnsFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("opening nf_tables netlink: %w", err)
	}
	return c, nil
}

func table() *nftables.Table { return &nftables.Table{Name: Table, Family: nftables.TableFamilyINet} }

// Applied returns the hash of the ruleset in the kernel ("" when there is no
// kiln table or it has no marker).
func (f *Firewall) Applied() (string, error) {
	c, err := f.conn()
	if err != nil {
		return "", err
	}
	return applied(c)
}

func applied(c *nftables.Conn) (string, error) {
	t := table()
	if _, err := c.ListTableOfFamily(Table, nftables.TableFamilyINet); err != nil {
		if errors.Is(err, unix.ENOENT) || strings.Contains(err.Error(), "no such file") {
			return "", nil
		}
		return "", fmt.Errorf("listing table %s: %w", Table, err)
	}
	rules, err := c.GetRules(t, &nftables.Chain{Name: "input", Table: t})
	if err != nil || len(rules) == 0 {
		return "", nil // a foreign or half-made table: replace it
	}
	comment, ok := userdata.GetString(rules[0].UserData, userdata.TypeComment)
	if !ok || !strings.HasPrefix(comment, markerPrefix) {
		return "", nil
	}
	return strings.TrimPrefix(comment, markerPrefix), nil
}

// Apply makes r the kiln table. An identical ruleset already in the kernel
// is left alone (counters and bans keep running) and changed is false;
// otherwise the table is deleted and recreated in one transaction, carrying
// the ban sets' live elements over with their remaining time.
func (f *Firewall) Apply(r *Ruleset) (changed bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.conn()
	if err != nil {
		return false, err
	}
	cur, err := applied(c)
	if err != nil {
		return false, err
	}
	if cur == r.hash {
		return false, nil
	}
	bans := map[string][]nftables.SetElement{}
	if cur != "" || tableExists(c) {
		for _, s := range []string{Ban4Set, Ban6Set} {
			bans[s] = liveBans(c, s)
		}
	}

	t := table()
	// add + delete + add in one batch: atomic whether or not the table exists.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	if r.helper {
		c.AddObj(&nftables.NamedObj{Table: t, Name: "tftp", Type: nftables.ObjTypeCtHelper,
			Obj: &expr.CtHelper{Name: "tftp", L3Proto: unix.NFPROTO_INET, L4Proto: unix.IPPROTO_UDP}})
	}
	sets := map[string]*nftables.Set{}
	for _, sd := range r.sets {
		s := &nftables.Set{Table: t, Name: sd.name, KeyType: nftables.TypeIPAddr, HasTimeout: sd.timeout}
		if sd.ip6 {
			s.KeyType = nftables.TypeIP6Addr
		}
		var els []nftables.SetElement
		for _, a := range sd.elems {
			els = append(els, nftables.SetElement{Key: a.AsSlice()})
		}
		els = append(els, bans[sd.name]...)
		if err := c.AddSet(s, els); err != nil {
			return false, fmt.Errorf("adding set %s: %w", sd.name, err)
		}
		sets[sd.name] = s
	}
	chains := map[string]*nftables.Chain{}
	for _, cd := range r.chains {
		ch := &nftables.Chain{Name: cd.name, Table: t}
		if cd.base != nil {
			policy := cd.base.policy
			ch.Type, ch.Hooknum, ch.Priority, ch.Policy = cd.base.typ, cd.base.hook, cd.base.prio, &policy
		}
		chains[cd.name] = c.AddChain(ch)
	}
	for _, cd := range r.chains {
		for _, rd := range cd.rules {
			var exprs []expr.Any
			for _, s := range rd.stmts {
				exprs = append(exprs, s.exprs(sets)...)
			}
			ru := &nftables.Rule{Table: t, Chain: chains[cd.name], Exprs: exprs}
			if rd.comment != "" {
				ru.UserData = userdata.AppendString(nil, userdata.TypeComment, rd.comment)
			}
			c.AddRule(ru)
		}
	}
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("replacing table inet %s: %w", Table, err)
	}
	return true, nil
}

func tableExists(c *nftables.Conn) bool {
	_, err := c.ListTableOfFamily(Table, nftables.TableFamilyINet)
	return err == nil
}

// liveBans returns the elements of a ban set with their remaining time as
// the new timeout (none on error: a ban is best effort).
func liveBans(c *nftables.Conn, name string) []nftables.SetElement {
	s, err := c.GetSetByName(table(), name)
	if err != nil {
		return nil
	}
	els, err := c.GetSetElements(s)
	if err != nil {
		return nil
	}
	var out []nftables.SetElement
	for _, e := range els {
		if e.Expires > 0 {
			out = append(out, nftables.SetElement{Key: e.Key, Timeout: e.Expires})
		}
	}
	return out
}

// Remove deletes the kiln table (nothing happens when it does not exist).
func (f *Firewall) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.conn()
	if err != nil {
		return err
	}
	if !tableExists(c) {
		return nil
	}
	c.DelTable(table())
	if err := c.Flush(); err != nil {
		return fmt.Errorf("deleting table inet %s: %w", Table, err)
	}
	return nil
}

func banSet(addr netip.Addr) *nftables.Set {
	if addr.Is4() {
		return &nftables.Set{Table: table(), Name: Ban4Set, KeyType: nftables.TypeIPAddr, HasTimeout: true}
	}
	return &nftables.Set{Table: table(), Name: Ban6Set, KeyType: nftables.TypeIP6Addr, HasTimeout: true}
}

// Ban drops every packet from addr for d (at most MaxBan); banning an
// address again restarts its time.
func (f *Firewall) Ban(_ context.Context, addr netip.Addr, d time.Duration) error {
	addr = addr.Unmap()
	if !addr.IsValid() || d <= 0 {
		return fmt.Errorf("banning %v for %s: need an address and a positive duration", addr, d)
	}
	d = min(d, MaxBan)
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.conn()
	if err != nil {
		return err
	}
	if !tableExists(c) {
		return ErrNotActive
	}
	s := banSet(addr)
	// Delete first so a repeated ban restarts its timeout; deleting a missing
	// element would fail the batch, so only do it when present.
	if els, err := c.GetSetElements(s); err == nil {
		for _, e := range els {
			if string(e.Key) == string(addr.AsSlice()) {
				if err := c.SetDeleteElements(s, []nftables.SetElement{{Key: e.Key}}); err != nil {
					return fmt.Errorf("banning %s: %w", addr, err)
				}
			}
		}
	}
	if err := c.SetAddElements(s, []nftables.SetElement{{Key: addr.AsSlice(), Timeout: d}}); err != nil {
		return fmt.Errorf("banning %s: %w", addr, err)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("banning %s: %w", addr, err)
	}
	return nil
}

// Unban lifts a ban early; an address that is not banned is no error.
func (f *Firewall) Unban(addr netip.Addr) error {
	addr = addr.Unmap()
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.conn()
	if err != nil {
		return err
	}
	s := banSet(addr)
	els, err := c.GetSetElements(s)
	if err != nil {
		return ErrNotActive
	}
	for _, e := range els {
		if string(e.Key) == string(addr.AsSlice()) {
			if err := c.SetDeleteElements(s, []nftables.SetElement{{Key: e.Key}}); err != nil {
				return fmt.Errorf("unbanning %s: %w", addr, err)
			}
			if err := c.Flush(); err != nil {
				return fmt.Errorf("unbanning %s: %w", addr, err)
			}
		}
	}
	return nil
}

// BanEntry is one banned address.
type BanEntry struct {
	Addr    netip.Addr    `json:"addr"`
	Expires time.Duration `json:"expires_ns"`
}

// Bans lists the banned addresses with their remaining time, sorted.
func (f *Firewall) Bans() ([]BanEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.conn()
	if err != nil {
		return nil, err
	}
	if !tableExists(c) {
		return nil, nil
	}
	var out []BanEntry
	for _, name := range []string{Ban4Set, Ban6Set} {
		s, err := c.GetSetByName(table(), name)
		if err != nil {
			continue
		}
		els, err := c.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("listing set %s: %w", name, err)
		}
		for _, e := range els {
			if a, ok := netip.AddrFromSlice(e.Key); ok {
				out = append(out, BanEntry{Addr: a, Expires: e.Expires})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out, nil
}
