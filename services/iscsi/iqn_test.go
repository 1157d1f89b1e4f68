package iscsi

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckIQN(t *testing.T) {
	long := "iqn.2026-01.example.hall:" + strings.Repeat("a", MaxIQNLength-len("iqn.2026-01.example.hall:"))
	for _, c := range []struct {
		iqn  string
		want string // "" = valid, else a fragment of the error
	}{
		{"iqn.2026-01.example.hall:node1", ""},
		{"iqn.2026-01.example.hall", ""},
		{"iqn.1992-01.com.example:storage.disk2.sys1.xyz", ""}, // RFC 3720 §3.2.6.3.1's example
		{"iqn.2026-01.example.hall:initiator:node-7", ""},
		{long, ""},
		{long + "a", "224 bytes"},
		{"iqn.2026-01.Example.hall:node1", "character 'E'"},
		{"iqn.2026-01.example.hall:node_1", "character '_'"},
		{"iqn.2026-01.example.hall:node 1", "character ' '"},
		{"iqn.2026-01.example.hall:nöde", "character"},
		{"eui.02004567a425678d", `start with "iqn."`},
		{"iqn.2026-13.example.hall:x", "month 01-12"},
		{"iqn.2026-00.example.hall:x", "month 01-12"},
		{"iqn.26-01.example.hall:x", "yyyy-mm"},
		{"iqn.2026-01:x", "reversed domain"},
		{"iqn.2026-01.example..hall:x", `label ""`},
		{"iqn.2026-01.-example.hall:x", `label "-example"`},
		{"iqn.2026-01.example.hall:", "nothing after"},
	} {
		err := CheckIQN(c.iqn)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("CheckIQN(%q) = %v, want nil", c.iqn, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrBadIQN)):
			t.Errorf("CheckIQN(%q) = %v, want ErrBadIQN mentioning %q", c.iqn, err, c.want)
		}
	}
}

func TestNames(t *testing.T) {
	n, err := NewNames("Hall.Example.", "2026-01")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ got, want string }{
		{n.Prefix, "iqn.2026-01.example.hall"},
		{n.Target("node1"), "iqn.2026-01.example.hall:node1"},
		{n.Initiator("node1"), "iqn.2026-01.example.hall:initiator:node1"},
		{Serial("node1", "boot"), "node1.boot"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
		if strings.HasPrefix(c.got, "iqn.") {
			if err := CheckIQN(c.got); err != nil {
				t.Errorf("CheckIQN(%q) = %v", c.got, err)
			}
		}
	}
	for _, c := range []struct{ domain, date, want string }{
		{"", "2026-01", "provisioning.domain"},
		{"hall.example", "2026-1", "yyyy-mm"},
		{"hall.example", "1969-12", "month 01-12"},
		{"ha_ll.example", "2026-01", `label "ha_ll"`},
		{strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 40), "2026-01", "at most 223"},
	} {
		if _, err := NewNames(c.domain, c.date); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewNames(%q, %q) = %v, want an error mentioning %q", c.domain, c.date, err, c.want)
		}
	}
}

// FuzzCheckIQN: whatever an operator types, an accepted name keeps the
// grammar's promises (length, characters, prefix, date).
func FuzzCheckIQN(f *testing.F) {
	for _, s := range []string{"iqn.2026-01.example.hall:node1", "iqn.2026-13.x", "iqn.2026-01.a-.b", "eui.1", "iqn.2026-01.x:" + strings.Repeat("y", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckIQN(s) != nil {
			return
		}
		if len(s) > MaxIQNLength || !strings.HasPrefix(s, "iqn.") || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-.:") != "" {
			t.Errorf("CheckIQN accepted %q", s)
		}
		if err := checkDate(s[4:11]); err != nil {
			t.Errorf("CheckIQN accepted %q with a bad date: %v", s, err)
		}
	})
}
