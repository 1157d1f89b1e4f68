package store

import (
	"encoding/hex"
	"fmt"
	"net"
	"strings"
)

// FieldError says which field of which record is wrong. Err is ErrInvalid or
// ErrConflict.
type FieldError struct {
	Line    int    // line in an import file, 0 otherwise
	Host    string // host name when known (imports), "" otherwise
	Field   string // e.g. "macs[1]"
	Problem string
	Err     error
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Host != "" && e.Line > 0 {
		fmt.Fprintf(&b, "host %s: ", e.Host)
	}
	b.WriteString(e.Field)
	b.WriteString(": ")
	b.WriteString(e.Problem)
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// Errors is every problem found in one operation; nothing was stored.
type Errors []*FieldError

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap lets errors.Is see ErrInvalid / ErrConflict of any element.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

func (es *Errors) invalid(field, format string, args ...any) {
	*es = append(*es, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...), Err: ErrInvalid})
}

func (es *Errors) conflict(field, format string, args ...any) {
	*es = append(*es, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...), Err: ErrConflict})
}

func (es Errors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// NormalizeMAC parses an Ethernet MAC in any common notation and returns it
// lower-case and colon separated ("52:54:00:aa:bb:cc").
func NormalizeMAC(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) == 12 && !strings.ContainsAny(s, ":-.") {
		// Bare hex, as printed by many switches and BMCs.
		b, err := hex.DecodeString(s)
		if err == nil {
			return net.HardwareAddr(b).String(), nil
		}
	}
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%q is not an Ethernet MAC address (want e.g. 52:54:00:aa:bb:cc)", s)
	}
	return hw.String(), nil
}

// Option82Text renders a relay agent sub-option (circuit-id, remote-id) the way
// hosts store their match key: printable ASCII as is, anything else "0x"+hex.
func Option82Text(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return "0x" + hex.EncodeToString(b)
		}
	}
	return string(b)
}
