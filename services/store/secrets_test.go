package store

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestSecretColumnsAreListed reads the schema: every column whose name says
// it holds a secret is in secretColumns, so Secrets (and the API's leak
// test built on it) sees new ones.
func TestSecretColumnsAreListed(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	secretName := regexp.MustCompile(`token|hash|secret|private|password|csrf|sealed`)
	rows, err := s.db.QueryContext(ctx, `SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var table, col string
		if err := rows.Scan(&table, &col); err != nil {
			t.Fatal(err)
		}
		n++
		if secretName.MatchString(col) && !strings.HasSuffix(col, "_ms") && !slices.Contains(secretColumns, table+"."+col) {
			t.Errorf("column %s.%s looks secret but is not in secretColumns", table, col)
		}
	}
	if n < 50 {
		t.Errorf("read only %d columns; the schema query is broken", n)
	}
	if _, err := s.Secrets(ctx); err != nil {
		t.Fatalf("Secrets() = %v", err)
	}
}

func TestSecrets(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	h := mustCreate(t, s, Host{Name: "pc-01", MACs: []string{"52:54:00:00:00:01"}})
	got, err := s.Secrets(ctx)
	if err != nil || !slices.Contains(got, Secret{Column: "hosts.token", Value: h.Token}) {
		t.Errorf("Secrets() = %v, %v, want hosts.token %s among them", got, err, h.Token)
	}
}

func TestRedacted(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"ip=10.0.0.5 subnet=lab", "ip=10.0.0.5 subnet=lab"},
		{"file=http://k/boot/52-54-00-00-00-01.ipxe?token=0123abcd ipxe", "file=http://k/boot/52-54-00-00-00-01.ipxe?token=redacted ipxe"},
		{"file=http://k/b.ipxe?token=abc", "file=http://k/b.ipxe?token=redacted"},
		{"a?token=abc&mac=x kiln.token=def", "a?token=redacted&mac=x kiln.token=redacted"},
		{"token=", "token="},
	} {
		if got := Redacted(tc.in); got != tc.want {
			t.Errorf("Redacted(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestBootEventsNeverKeepTokens: an event quoting a boot URL is stored
// without its token, and migration 0005 cuts the token out of rows written
// before.
func TestBootEventsNeverKeepTokens(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	const mac = "52:54:00:00:00:01"
	if err := s.AddBootEvent(ctx, BootEvent{MAC: mac, Kind: EventDHCPAck, Detail: "ip=10.0.0.5 file=http://k/boot/x.ipxe?token=s3cr3t1234567890 ipxe"}); err != nil {
		t.Fatal(err)
	}
	// A row as an older kiln wrote it, then the migration.
	if _, err := s.db.ExecContext(ctx, `INSERT INTO boot_events (mac, host, kind, detail, time_ms) VALUES (?, '', 'dhcp_offer', ?, 1), (?, '', 'dhcp_ack', ?, 2)`,
		mac, "ip=10.0.0.5 subnet=lab file=http://k/boot/x.ipxe?token=0ld5ecret arch=7 ipxe", mac, "file=http://k/boot/x.ipxe?token=0ld5ecret"); err != nil {
		t.Fatal(err)
	}
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ms, func(m migration) bool { return m.name == "redact_boot_events" })
	if i < 0 {
		t.Fatal("no migration redact_boot_events")
	}
	if _, err := s.db.ExecContext(ctx, ms[i].sql); err != nil {
		t.Fatalf("migration %s: %v", ms[i].name, err)
	}
	es, err := s.BootEvents(ctx, mac, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Detail)
	}
	want := []string{
		"ip=10.0.0.5 file=http://k/boot/x.ipxe ipxe", // redacted when stored, then cut
		"file=http://k/boot/x.ipxe",
		"ip=10.0.0.5 subnet=lab file=http://k/boot/x.ipxe arch=7 ipxe",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("stored details = %q, want %q", got, want)
	}
}
