package iscsi

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxIQNLength is RFC 3720 §3.2.6.1's limit on an iSCSI name, in bytes.
const MaxIQNLength = 223

// ErrBadIQN: a string is not an iSCSI qualified name kiln accepts.
var ErrBadIQN = errors.New("not a valid iSCSI qualified name")

// Names derives kiln's iSCSI names from its naming authority: the
// reversed provisioning.domain and the year and month the site took it
// (RFC 3720 §3.2.6.3.1, "iqn." date "." reversed domain ":" unique part).
type Names struct {
	// Prefix is "iqn.<yyyy-mm>.<reversed domain>".
	Prefix string
}

// NewNames returns the names for domain (e.g. "hall.example") and date
// ("2026-01"). The date must not change once initiators know the names.
func NewNames(domain, date string) (Names, error) {
	if err := checkDate(date); err != nil {
		return Names{}, err
	}
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	if domain == "" {
		return Names{}, fmt.Errorf("%w: the naming authority needs provisioning.domain (e.g. hall.example)", ErrBadIQN)
	}
	labels := strings.Split(domain, ".")
	for _, l := range labels {
		if !validLabel(l) {
			return Names{}, fmt.Errorf("%w: domain %q: label %q must be 1-63 letters, digits and '-', not starting or ending with '-'", ErrBadIQN, domain, l)
		}
	}
	slices.Reverse(labels)
	n := Names{Prefix: "iqn." + date + "." + strings.Join(labels, ".")}
	return n, CheckIQN(n.Prefix)
}

// Target is the IQN of host's target: one target per host, one LUN per volume.
func (n Names) Target(host string) string { return n.Prefix + ":" + host }

// Initiator is the IQN kiln gives host's initiator unless the operator
// stored another; httpboot's iPXE scripts set the same default.
func (n Names) Initiator(host string) string { return n.Prefix + ":initiator:" + host }

// Serial is a volume's SCSI unit serial (VPD page 0x80): "<host>.<volume>",
// so the initiator's /dev/disk/by-id names the volume.
func Serial(host, volume string) string { return host + "." + volume }

// CheckIQN reports whether s is an "iqn." name of RFC 3720 §3.2.6.3.1 in
// the normalized form RFC 3722's stringprep profile yields for ASCII: lower
// case letters, digits, '-', '.' and ':', at most 223 bytes, a valid
// yyyy-mm date and a reversed domain of valid labels. Non-ASCII names are
// refused: kiln never makes them and LIO compares bytes.
func CheckIQN(s string) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %q: %s", ErrBadIQN, s, fmt.Sprintf(format, a...))
	}
	if len(s) > MaxIQNLength {
		return bad("%d bytes, at most %d allowed", len(s), MaxIQNLength)
	}
	if i := strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == ':')
	}); i >= 0 {
		return bad("character %q at %d: only lower-case letters, digits, '-', '.' and ':' are allowed", s[i], i)
	}
	rest, ok := strings.CutPrefix(s, "iqn.")
	if !ok {
		return bad(`must start with "iqn."`)
	}
	authority, unique, hasUnique := strings.Cut(rest, ":")
	if hasUnique && unique == "" {
		return bad("nothing after ':'")
	}
	if len(authority) < 8 || authority[7] != '.' {
		return bad(`want "iqn.yyyy-mm.<reversed domain>"`)
	}
	if err := checkDate(authority[:7]); err != nil {
		return bad("%v", err)
	}
	for _, l := range strings.Split(authority[8:], ".") {
		if !validLabel(l) {
			return bad("naming authority label %q must be 1-63 letters, digits and '-', not starting or ending with '-'", l)
		}
	}
	return nil
}

// checkDate accepts "yyyy-mm" with a month 01-12 and a year from 1970.
func checkDate(d string) error {
	if len(d) != 7 || d[4] != '-' {
		return fmt.Errorf("date %q: want yyyy-mm, e.g. 2026-01", d)
	}
	y, err1 := strconv.Atoi(d[:4])
	m, err2 := strconv.Atoi(d[5:])
	if err1 != nil || err2 != nil || y < 1970 || m < 1 || m > 12 || strings.ContainsAny(d, "+ ") {
		return fmt.Errorf("date %q: want yyyy-mm with a month 01-12, e.g. 2026-01", d)
	}
	return nil
}

func validLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for _, r := range l {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}
