package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"kiln.dev/kiln/services/internal/exportname"
	"kiln.dev/kiln/services/vetting/spec"
)

// BootProfile says what a host boots into when it network-boots.
type BootProfile string

// Boot profiles.
const (
	BootVet      BootProfile = "vet"      // the vetting live image (inventory, burn-in)
	BootLocal    BootProfile = "local"    // exit iPXE and boot the local disk
	BootDiskless BootProfile = "diskless" // kernel + NFS root
	BootISCSI    BootProfile = "iscsi"    // sanboot from kiln's iSCSI target
	BootKernel   BootProfile = "kernel"   // a configured kernel/initrd over HTTP
)

// BootProfiles lists every valid profile.
var BootProfiles = []BootProfile{BootVet, BootLocal, BootDiskless, BootISCSI, BootKernel}

// DefaultBootProfile is used when a host names none (also for enrolled
// unknown machines): booting the local disk never changes a machine.
const DefaultBootProfile = BootLocal

// EnrolledRole is the role of hosts created by EnrollUnknown.
const EnrolledRole = "unknown"

// Host is one machine kiln knows.
type Host struct {
	ID   int64
	Name string // DNS label, lower case; unique
	// MACs are the host's network interfaces; each MAC belongs to one host.
	MACs        []string
	Role        string
	BootProfile BootProfile
	// IPv4 is the reserved address; the zero Addr means none (pool).
	IPv4    netip.Addr
	Aliases []string // extra DNS names (CNAMEs)
	// ExpectedSpec is YAML text describing the hardware the host should have.
	ExpectedSpec string
	WoLMAC       string // MAC to send Wake-on-LAN packets to ("" = the first MAC)
	SwitchPort   string // human description, e.g. "sw1 gi0/7"
	// CircuitID and RemoteID match DHCP option 82 (see Option82Text); empty = any.
	CircuitID string
	RemoteID  string
	// IPXEBinary overrides the iPXE build sent to UEFI PXE firmware (e.g. snponly.efi).
	IPXEBinary string
	// Kernel and Initrd are what boot profile kernel boots (Kernel is
	// required there), and override the site's vet and diskless images: a
	// path below the HTTP boot files root ("custom/vmlinuz") or an http(s)
	// URL. Cmdline is added to the kernel command line.
	Kernel, Initrd, Cmdline string
	// RootImage is the root image a diskless host mounts: "name" (its
	// promoted version), "name@N" (version N) or empty (the role's default
	// from provisioning.nfs.roles, if any). Home names the read-write home
	// export it mounts; empty: the role's default.
	RootImage, Home string
	// Token authenticates the host's boot URLs; generated when empty.
	Token            string
	Created, Updated time.Time
}

// normalize canonicalizes h in place and returns what is malformed.
func (h *Host) normalize() Errors {
	var es Errors
	h.Name = strings.ToLower(strings.TrimSpace(h.Name))
	if h.Name == "" {
		es.invalid("name", "missing (every host needs a name, e.g. pc-07)")
	} else if !validLabel(h.Name) {
		es.invalid("name", "%q is not a valid host name (use 1-63 letters, digits and '-', not starting or ending with '-')", h.Name)
	}
	seen := map[string]int{}
	for i, m := range h.MACs {
		n, err := NormalizeMAC(m)
		if err != nil {
			es.invalid(fmt.Sprintf("macs[%d]", i), "%v", err)
			continue
		}
		if j, dup := seen[n]; dup {
			es.invalid(fmt.Sprintf("macs[%d]", i), "%s is listed twice (also macs[%d])", n, j)
		}
		seen[n] = i
		h.MACs[i] = n
	}
	if h.BootProfile == "" {
		h.BootProfile = DefaultBootProfile
	}
	if !validProfile(h.BootProfile) {
		es.invalid("boot_profile", "unknown profile %q (use one of vet, local, diskless, iscsi, kernel)", h.BootProfile)
	}
	if h.IPv4.IsValid() {
		if !h.IPv4.Is4() {
			es.invalid("ipv4", "%s is not an IPv4 address", h.IPv4)
		} else if h.IPv4.IsUnspecified() || h.IPv4.IsMulticast() || h.IPv4 == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			es.invalid("ipv4", "%s cannot be reserved for a host", h.IPv4)
		}
	}
	for i, a := range h.Aliases {
		a = strings.ToLower(strings.TrimSpace(a))
		h.Aliases[i] = a
		if !validName(a) {
			es.invalid(fmt.Sprintf("aliases[%d]", i), "%q is not a valid DNS name", a)
		} else if a == h.Name {
			es.invalid(fmt.Sprintf("aliases[%d]", i), "%q is the host's own name", a)
		}
	}
	if h.ExpectedSpec != "" {
		var v any
		if err := yaml.Unmarshal([]byte(h.ExpectedSpec), &v); err != nil {
			es.invalid("expected_spec", "not valid YAML: %v", err)
		} else if _, err := spec.Parse([]byte(h.ExpectedSpec)); err != nil {
			es.invalid("expected_spec", "not a vetting spec (expect: a list of {fact, min|max|exact|regex|in|contains}; see docs/vetting.md): %v", err)
		}
	}
	if h.WoLMAC != "" {
		n, err := NormalizeMAC(h.WoLMAC)
		if err != nil {
			es.invalid("wol_mac", "%v", err)
		}
		h.WoLMAC = n
	}
	if strings.ContainsAny(h.IPXEBinary, "/\\ ") || strings.HasPrefix(h.IPXEBinary, ".") {
		es.invalid("ipxe_binary", "%q must be a plain file name such as snponly.efi", h.IPXEBinary)
	}
	for _, a := range []struct{ field, val string }{{"kernel", h.Kernel}, {"initrd", h.Initrd}} {
		if a.val != "" && !validArtifact(a.val) {
			es.invalid(a.field, "%q is neither a path below the HTTP boot files root (like vet/vmlinuz, no '..') nor an http(s) URL without spaces", a.val)
		}
	}
	if h.BootProfile == BootKernel && h.Kernel == "" {
		es.invalid("kernel", "missing (boot profile kernel boots the host's own kernel: set kernel to a path below the HTTP boot files root or an http(s) URL)")
	}
	if len(h.Cmdline) > 2048 || strings.ContainsFunc(h.Cmdline, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		es.invalid("cmdline", "must be one line of at most 2048 characters")
	}
	h.RootImage, h.Home = strings.TrimSpace(h.RootImage), strings.TrimSpace(h.Home)
	if h.RootImage != "" && !ValidImageRef(h.RootImage) {
		es.invalid("root_image", "%q is not a root image (use NAME for its promoted version or NAME@VERSION, as `kiln roots list` shows them)", h.RootImage)
	}
	if h.Home != "" && !ValidExportName(h.Home) {
		es.invalid("home", "%q is not a home name (use "+exportname.Rule+")", h.Home)
	}
	if h.Token != "" && (len(h.Token) < 16 || strings.ContainsAny(h.Token, " /?&#%")) {
		es.invalid("token", "must be at least 16 URL-safe characters (leave empty to generate one)")
	}
	return es
}

// conflicts reports values of h already used by another host.
func conflicts(ctx context.Context, tx *sql.Tx, h *Host) (Errors, error) {
	var es Errors
	var other string
	err := tx.QueryRowContext(ctx, `SELECT name FROM hosts WHERE name = ? AND id <> ?`, h.Name, h.ID).Scan(&other)
	switch {
	case err == nil:
		es.conflict("name", "%s already exists", h.Name)
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("checking name: %w", err)
	}
	for i, m := range h.MACs {
		err := tx.QueryRowContext(ctx, `SELECT h.name FROM host_macs m JOIN hosts h ON h.id = m.host_id
			WHERE m.mac = ? AND m.host_id <> ?`, m, h.ID).Scan(&other)
		switch {
		case err == nil:
			es.conflict(fmt.Sprintf("macs[%d]", i), "%s already belongs to host %s", m, other)
		case !errors.Is(err, sql.ErrNoRows):
			return nil, fmt.Errorf("checking MAC: %w", err)
		}
	}
	if h.IPv4.IsValid() {
		err := tx.QueryRowContext(ctx, `SELECT name FROM hosts WHERE reserved_ipv4 = ? AND id <> ?`, h.IPv4.String(), h.ID).Scan(&other)
		switch {
		case err == nil:
			es.conflict("ipv4", "%s is already reserved for host %s", h.IPv4, other)
		case !errors.Is(err, sql.ErrNoRows):
			return nil, fmt.Errorf("checking address: %w", err)
		}
	}
	if h.Token != "" {
		err := tx.QueryRowContext(ctx, `SELECT name FROM hosts WHERE token = ? AND id <> ?`, h.Token, h.ID).Scan(&other)
		switch {
		case err == nil:
			es.conflict("token", "already used by host %s", other)
		case !errors.Is(err, sql.ErrNoRows):
			return nil, fmt.Errorf("checking token: %w", err)
		}
	}
	// Names and aliases share the DNS namespace. Two queries, so each uses
	// an index (names are unique; hosts_aliased holds the hosts with aliases)
	// instead of scanning every host.
	mine := map[string]int{}
	for i, a := range h.Aliases {
		mine[a] = i
	}
	if len(h.Aliases) > 0 {
		rows, err := tx.QueryContext(ctx, `SELECT name FROM hosts WHERE id <> ? AND name IN (`+placeholders(len(h.Aliases))+`)`,
			append([]any{h.ID}, anySlice(h.Aliases)...)...)
		if err != nil {
			return nil, fmt.Errorf("checking aliases: %w", err)
		}
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				rows.Close()
				return nil, fmt.Errorf("checking aliases: %w", err)
			}
			es.conflict(fmt.Sprintf("aliases[%d]", mine[name]), "%s is the name of another host", name)
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("checking aliases: %w", err)
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT name, aliases FROM hosts WHERE aliases <> '' AND id <> ?`, h.ID)
	if err != nil {
		return nil, fmt.Errorf("checking aliases: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, aliases string
		if err := rows.Scan(&name, &aliases); err != nil {
			return nil, fmt.Errorf("checking aliases: %w", err)
		}
		for _, a := range strings.Fields(aliases) {
			if i, ok := mine[a]; ok {
				es.conflict(fmt.Sprintf("aliases[%d]", i), "%s is already an alias of host %s", a, name)
			}
			if a == h.Name {
				es.conflict("name", "%s is already an alias of host %s", a, name)
			}
		}
	}
	return es, rows.Err()
}

// CreateHost stores a new host with its MACs and returns it with ID, token and
// times filled in.
func (s *Store) CreateHost(ctx context.Context, h Host) (Host, error) {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		h, err = s.createHost(ctx, tx, h)
		return err
	})
	return h, err
}

func (s *Store) createHost(ctx context.Context, tx *sql.Tx, h Host) (Host, error) {
	h.ID = 0
	h.MACs = append([]string(nil), h.MACs...)
	h.Aliases = append([]string(nil), h.Aliases...)
	if es := h.normalize(); len(es) > 0 {
		return h, es
	}
	if h.Token == "" {
		h.Token = newToken()
	}
	es, err := conflicts(ctx, tx, &h)
	if err != nil {
		return h, err
	}
	if len(es) > 0 {
		return h, es
	}
	now := s.now()
	h.Created, h.Updated = now.UTC().Truncate(time.Millisecond), now.UTC().Truncate(time.Millisecond)
	err = tx.QueryRowContext(ctx, `INSERT INTO hosts (name, role, boot_profile, reserved_ipv4, aliases, expected_spec,
		wol_mac, switch_port, opt82_circuit_id, opt82_remote_id, ipxe_binary, kernel, initrd, cmdline, root_image, home, token, created_ms, updated_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		h.Name, h.Role, string(h.BootProfile), nullAddr(h.IPv4), strings.Join(h.Aliases, " "), h.ExpectedSpec,
		h.WoLMAC, h.SwitchPort, h.CircuitID, h.RemoteID, h.IPXEBinary, h.Kernel, h.Initrd, h.Cmdline, h.RootImage, h.Home, h.Token, ms2int(now), ms2int(now)).Scan(&h.ID)
	if err != nil {
		return h, fmt.Errorf("inserting host %s: %w", h.Name, err)
	}
	if err := insertMACs(ctx, tx, h); err != nil {
		return h, err
	}
	return h, bump(ctx, tx)
}

// UpdateHost replaces every field of the host with h.ID (MACs included). An
// empty Token keeps the current one.
func (s *Store) UpdateHost(ctx context.Context, h Host) (Host, error) {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		h, err = s.updateHost(ctx, tx, h)
		return err
	})
	return h, err
}

func (s *Store) updateHost(ctx context.Context, tx *sql.Tx, h Host) (Host, error) {
	h.MACs = append([]string(nil), h.MACs...)
	h.Aliases = append([]string(nil), h.Aliases...)
	if es := h.normalize(); len(es) > 0 {
		return h, es
	}
	var created int64
	var token string
	err := tx.QueryRowContext(ctx, `SELECT created_ms, token FROM hosts WHERE id = ?`, h.ID).Scan(&created, &token)
	if errors.Is(err, sql.ErrNoRows) {
		return h, fmt.Errorf("host id %d: %w", h.ID, ErrNotFound)
	} else if err != nil {
		return h, fmt.Errorf("reading host %d: %w", h.ID, err)
	}
	if h.Token == "" {
		h.Token = token
	}
	es, err := conflicts(ctx, tx, &h)
	if err != nil {
		return h, err
	}
	if len(es) > 0 {
		return h, es
	}
	now := s.now()
	h.Created, h.Updated = int2time(created), now.UTC().Truncate(time.Millisecond)
	if _, err := tx.ExecContext(ctx, `UPDATE hosts SET name = ?, role = ?, boot_profile = ?, reserved_ipv4 = ?, aliases = ?,
		expected_spec = ?, wol_mac = ?, switch_port = ?, opt82_circuit_id = ?, opt82_remote_id = ?, ipxe_binary = ?,
		kernel = ?, initrd = ?, cmdline = ?, root_image = ?, home = ?, token = ?, updated_ms = ? WHERE id = ?`,
		h.Name, h.Role, string(h.BootProfile), nullAddr(h.IPv4), strings.Join(h.Aliases, " "), h.ExpectedSpec,
		h.WoLMAC, h.SwitchPort, h.CircuitID, h.RemoteID, h.IPXEBinary, h.Kernel, h.Initrd, h.Cmdline, h.RootImage, h.Home, h.Token, ms2int(now), h.ID); err != nil {
		return h, fmt.Errorf("updating host %s: %w", h.Name, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM host_macs WHERE host_id = ?`, h.ID); err != nil {
		return h, fmt.Errorf("updating MACs of %s: %w", h.Name, err)
	}
	if err := insertMACs(ctx, tx, h); err != nil {
		return h, err
	}
	return h, bump(ctx, tx)
}

func insertMACs(ctx context.Context, tx *sql.Tx, h Host) error {
	for i, m := range h.MACs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO host_macs (mac, host_id, position) VALUES (?, ?, ?)`, m, h.ID, i); err != nil {
			return fmt.Errorf("storing macs[%d] of %s: %w", i, h.Name, err)
		}
	}
	return nil
}

// DeleteHost removes a host, its MACs and its iSCSI initiator; a host
// with volumes is refused. Leases and boot events stay.
func (s *Store) DeleteHost(ctx context.Context, name string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var vols int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM iscsi_volumes WHERE host_id = (SELECT id FROM hosts WHERE name = ?)`,
			strings.ToLower(name)).Scan(&vols); err != nil {
			return fmt.Errorf("counting volumes of %s: %w", name, err)
		}
		if vols > 0 {
			return Errors{{Field: "name", Problem: fmt.Sprintf("host %s still has %d iSCSI volume(s); delete them first (kiln volumes rm %s/NAME)", name, vols, name), Err: ErrConflict}}
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM hosts WHERE name = ?`, strings.ToLower(name))
		if err != nil {
			return fmt.Errorf("deleting host %s: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("host %s: %w", name, ErrNotFound)
		}
		return bump(ctx, tx)
	})
}

const hostColumns = `h.id, h.name, h.role, h.boot_profile, h.reserved_ipv4, h.aliases, h.expected_spec, h.wol_mac,
	h.switch_port, h.opt82_circuit_id, h.opt82_remote_id, h.ipxe_binary, h.kernel, h.initrd, h.cmdline, h.root_image, h.home, h.token,
	h.created_ms, h.updated_ms`

// queryHosts runs a SELECT of hostColumns and attaches each host's MACs.
func (s *Store) queryHosts(ctx context.Context, query string, args ...any) ([]Host, error) {
	return queryHostsIn(ctx, s.db, query, args...)
}

// queryHostsIn is queryHosts on q (the store's pool or a transaction).
func queryHostsIn(ctx context.Context, q querier, query string, args ...any) ([]Host, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("querying hosts: %w", err)
	}
	defer rows.Close()
	var hosts []Host
	idx := map[int64]int{}
	for rows.Next() {
		var h Host
		var ip sql.NullString
		var aliases, profile string
		var created, updated int64
		if err := rows.Scan(&h.ID, &h.Name, &h.Role, &profile, &ip, &aliases, &h.ExpectedSpec, &h.WoLMAC,
			&h.SwitchPort, &h.CircuitID, &h.RemoteID, &h.IPXEBinary, &h.Kernel, &h.Initrd, &h.Cmdline, &h.RootImage, &h.Home, &h.Token,
			&created, &updated); err != nil {
			return nil, fmt.Errorf("reading host: %w", err)
		}
		h.BootProfile = BootProfile(profile)
		if ip.Valid {
			h.IPv4, _ = netip.ParseAddr(ip.String)
		}
		if aliases != "" {
			h.Aliases = strings.Fields(aliases)
		}
		h.Created, h.Updated = int2time(created), int2time(updated)
		idx[h.ID] = len(hosts)
		hosts = append(hosts, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading hosts: %w", err)
	}
	rows.Close()
	if len(hosts) == 0 {
		return nil, nil
	}
	var mrows *sql.Rows
	if len(hosts) == 1 {
		mrows, err = q.QueryContext(ctx, `SELECT host_id, mac FROM host_macs WHERE host_id = ? ORDER BY position`, hosts[0].ID)
	} else {
		mrows, err = q.QueryContext(ctx, `SELECT host_id, mac FROM host_macs ORDER BY host_id, position`)
	}
	if err != nil {
		return nil, fmt.Errorf("querying MACs: %w", err)
	}
	defer mrows.Close()
	for mrows.Next() {
		var id int64
		var mac string
		if err := mrows.Scan(&id, &mac); err != nil {
			return nil, fmt.Errorf("reading MAC: %w", err)
		}
		if i, ok := idx[id]; ok {
			hosts[i].MACs = append(hosts[i].MACs, mac)
		}
	}
	return hosts, mrows.Err()
}

func (s *Store) oneHost(ctx context.Context, what, query string, args ...any) (Host, error) {
	hs, err := s.queryHosts(ctx, query, args...)
	if err != nil {
		return Host{}, err
	}
	if len(hs) == 0 {
		return Host{}, fmt.Errorf("host with %s: %w", what, ErrNotFound)
	}
	return hs[0], nil
}

// HostByName returns the host with that name.
func (s *Store) HostByName(ctx context.Context, name string) (Host, error) {
	name = strings.ToLower(name)
	return s.oneHost(ctx, "name "+name, `SELECT `+hostColumns+` FROM hosts h WHERE h.name = ?`, name)
}

// HostByMAC returns the host owning mac (any notation).
func (s *Store) HostByMAC(ctx context.Context, mac string) (Host, error) {
	n, err := NormalizeMAC(mac)
	if err != nil {
		return Host{}, &FieldError{Field: "mac", Problem: err.Error(), Err: ErrInvalid}
	}
	return s.oneHost(ctx, "MAC "+n, `SELECT `+hostColumns+` FROM hosts h JOIN host_macs m ON m.host_id = h.id WHERE m.mac = ?`, n)
}

// HostByToken returns the host whose boot URLs carry token.
func (s *Store) HostByToken(ctx context.Context, token string) (Host, error) {
	if token == "" {
		return Host{}, fmt.Errorf("empty token: %w", ErrNotFound)
	}
	return s.oneHost(ctx, "that token", `SELECT `+hostColumns+` FROM hosts h WHERE h.token = ?`, token)
}

// HostByOption82 returns the host whose match key fits a relayed request's
// circuit-id and remote-id (as Option82Text). A host matches when every key it
// sets equals the request's; hosts setting both keys win over hosts setting one.
func (s *Store) HostByOption82(ctx context.Context, circuitID, remoteID string) (Host, error) {
	if circuitID == "" && remoteID == "" {
		return Host{}, fmt.Errorf("empty option 82: %w", ErrNotFound)
	}
	return s.oneHost(ctx, fmt.Sprintf("option 82 circuit-id %q remote-id %q", circuitID, remoteID),
		`SELECT `+hostColumns+` FROM hosts h
		WHERE (h.opt82_circuit_id <> '' OR h.opt82_remote_id <> '')
		  AND (h.opt82_circuit_id = '' OR h.opt82_circuit_id = ?)
		  AND (h.opt82_remote_id = '' OR h.opt82_remote_id = ?)
		ORDER BY (CASE WHEN h.opt82_circuit_id <> '' AND h.opt82_remote_id <> '' THEN 0 ELSE 1 END), h.name
		LIMIT 1`, circuitID, remoteID)
}

// ListHosts returns every host, ordered by name.
func (s *Store) ListHosts(ctx context.Context) ([]Host, error) {
	return s.queryHosts(ctx, `SELECT `+hostColumns+` FROM hosts h ORDER BY h.name`)
}

// Reservations maps every reserved IPv4 address to its host's name.
func (s *Store) Reservations(ctx context.Context) (map[netip.Addr]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT reserved_ipv4, name FROM hosts WHERE reserved_ipv4 IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("querying reservations: %w", err)
	}
	defer rows.Close()
	out := map[netip.Addr]string{}
	for rows.Next() {
		var ip, name string
		if err := rows.Scan(&ip, &name); err != nil {
			return nil, fmt.Errorf("reading reservation: %w", err)
		}
		if a, err := netip.ParseAddr(ip); err == nil {
			out[a] = name
		}
	}
	return out, rows.Err()
}

// ReservedFor returns the name of the host reserving ip, or "" when no host
// does (one indexed lookup, for the DHCP server's allocation path).
func (s *Store) ReservedFor(ctx context.Context, ip netip.Addr) (string, error) {
	var name string
	err := s.db.QueryRowContext(ctx, `SELECT name FROM hosts WHERE reserved_ipv4 = ?`, ip.String()).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("looking up the reservation of %s: %w", ip, err)
	}
	return name, nil
}

// EnrollUnknown returns the host owning mac, creating one named
// "unknown-<mac hex>" (role "unknown", DefaultBootProfile) if there is none.
// created reports whether a host was added. Safe against concurrent callers in
// other processes.
func (s *Store) EnrollUnknown(ctx context.Context, mac string) (h Host, created bool, err error) {
	n, err := NormalizeMAC(mac)
	if err != nil {
		return Host{}, false, &FieldError{Field: "mac", Problem: err.Error(), Err: ErrInvalid}
	}
	if h, err := s.HostByMAC(ctx, n); err == nil || !errors.Is(err, ErrNotFound) {
		return h, false, err
	}
	base := "unknown-" + strings.ReplaceAll(n, ":", "")
	err = s.tx(ctx, func(tx *sql.Tx) error {
		// Re-check inside the write lock: another process may have enrolled it.
		var id int64
		err := tx.QueryRowContext(ctx, `SELECT host_id FROM host_macs WHERE mac = ?`, n).Scan(&id)
		if err == nil {
			return nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("checking MAC: %w", err)
		}
		for i := 1; i < 100; i++ {
			name := base
			if i > 1 {
				name = fmt.Sprintf("%s-%d", base, i)
			}
			h, err = s.createHost(ctx, tx, Host{Name: name, MACs: []string{n}, Role: EnrolledRole})
			var es Errors
			if errors.As(err, &es) && len(es) == 1 && es[0].Field == "name" {
				continue // name taken by a host that lost this MAC
			}
			created = err == nil
			return err
		}
		return fmt.Errorf("enrolling %s: no free name %s-N", n, base)
	})
	if err != nil {
		return Host{}, false, err
	}
	if !created {
		h, err = s.HostByMAC(ctx, n)
	}
	return h, created, err
}

func newToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func nullAddr(a netip.Addr) any {
	if !a.IsValid() {
		return nil
	}
	return a.String()
}

func placeholders(n int) string {
	if n == 0 {
		return "NULL"
	}
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func validProfile(p BootProfile) bool {
	for _, q := range BootProfiles {
		if p == q {
			return true
		}
	}
	return false
}

// validLabel reports whether s is a DNS label usable as a host name.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z') {
			return false
		}
	}
	return true
}

// validName reports whether s is a relative or absolute DNS name of labels.
func validName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !validLabel(l) {
			return false
		}
	}
	return true
}

// validArtifact accepts an http(s) URL without spaces or a relative path of
// plain components.
func validArtifact(s string) bool {
	if len(s) > 1024 || strings.ContainsFunc(s, func(r rune) bool { return r <= 0x20 || r == 0x7f }) {
		return false
	}
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		return len(s) > len("https://")
	}
	if strings.ContainsRune(s, '\\') {
		return false
	}
	for _, c := range strings.Split(s, "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return true
}

// CountHosts returns how many hosts have role (all hosts when role is "").
func (s *Store) CountHosts(ctx context.Context, role string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM hosts WHERE ? = '' OR role = ?`, role, role).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting hosts: %w", err)
	}
	return n, nil
}
