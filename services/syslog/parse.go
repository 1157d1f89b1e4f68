package syslog

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Formats a message was parsed as.
const (
	FormatRFC5424 = "rfc5424"
	FormatRFC3164 = "rfc3164"
)

// MaxMessage is the largest message kept; longer ones are cut (RFC 5424
// section 6.1 lets a receiver truncate, and asks for at least 2048 octets).
const MaxMessage = 8192

// ErrNoPRI is returned for a datagram that does not start with "<PRI>".
var ErrNoPRI = errors.New("syslog message does not start with <PRI>")

// Message is one syslog message.
type Message struct {
	Facility, Severity int
	// Time is the sender's timestamp; zero when it sent none or one that
	// does not parse (the receive time is kept separately).
	Time     time.Time
	Hostname string
	App      string // APP-NAME (5424) or TAG (3164)
	ProcID   string
	MsgID    string
	// Text is the message, with structured data (5424) in front when present.
	Text   string
	Format string
}

// Parse reads one syslog message: RFC 5424 when the PRI is followed by
// the version "1 ", else RFC 3164 (BSD), which in practice is whatever
// follows the PRI: "Mmm dd hh:mm:ss host tag[pid]: text", with any of the
// parts missing. Fields that do not parse are left empty and the rest of
// the line is kept as text, so nothing a client sent is lost. now supplies
// the year and zone RFC 3164 timestamps lack.
func Parse(b []byte, now time.Time) (Message, error) {
	if len(b) > MaxMessage {
		b = b[:MaxMessage]
	}
	b = bytes.TrimRight(b, "\r\n\x00")
	pri, rest, ok := parsePRI(b)
	if !ok {
		return Message{}, ErrNoPRI
	}
	m := Message{Facility: pri / 8, Severity: pri % 8}
	if r, ok := bytes.CutPrefix(rest, []byte("1 ")); ok {
		m.Format = FormatRFC5424
		parse5424(&m, r)
	} else {
		m.Format = FormatRFC3164
		parse3164(&m, rest, now)
	}
	m.Text = clean(m.Text)
	return m, nil
}

// parsePRI reads "<N>" with N 0-191 of at most 3 digits.
func parsePRI(b []byte) (int, []byte, bool) {
	if len(b) < 3 || b[0] != '<' {
		return 0, nil, false
	}
	end := bytes.IndexByte(b[:min(len(b), 5)], '>')
	if end < 2 {
		return 0, nil, false
	}
	n, err := strconv.Atoi(string(b[1:end]))
	if err != nil || n < 0 || n > 191 || (end > 2 && b[1] == '0') {
		return 0, nil, false
	}
	return n, b[end+1:], true
}

// parse5424 reads "TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]".
func parse5424(m *Message, b []byte) {
	fields := make([]string, 5)
	for i := range fields {
		var f []byte
		f, b, _ = bytes.Cut(b, []byte(" "))
		if string(f) != "-" {
			fields[i] = string(f)
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, fields[0]); err == nil {
		m.Time = t
	}
	m.Hostname, m.App, m.ProcID, m.MsgID = clean(fields[1]), clean(fields[2]), clean(fields[3]), clean(fields[4])
	sd, msg := splitSD(b)
	msg = bytes.TrimPrefix(msg, []byte("\xef\xbb\xbf")) // BOM marks UTF-8
	switch {
	case sd == "" || sd == "-":
		m.Text = string(msg)
	case len(msg) == 0:
		m.Text = sd
	default:
		m.Text = sd + " " + string(msg)
	}
}

// splitSD splits structured data ("-" or "[id k="v"]...") from the message.
func splitSD(b []byte) (string, []byte) {
	if len(b) > 0 && b[0] == '-' {
		return "-", bytes.TrimPrefix(b[1:], []byte(" "))
	}
	i, inQuote := 0, false
	for i < len(b) && b[i] == '[' {
		j := i + 1
		for ; j < len(b); j++ {
			c := b[j]
			switch {
			case inQuote && c == '\\' && j+1 < len(b):
				j++
			case c == '"':
				inQuote = !inQuote
			case c == ']' && !inQuote:
				goto closed
			}
		}
		return string(b), nil // unterminated: keep it all as text
	closed:
		i = j + 1
	}
	return string(b[:i]), bytes.TrimPrefix(b[i:], []byte(" "))
}

// parse3164 reads "[TIMESTAMP ][HOSTNAME ]TAG[PID]: MSG", tolerating any
// part being absent.
func parse3164(m *Message, b []byte, now time.Time) {
	s := string(b)
	if len(s) >= 16 && s[15] == ' ' {
		if t, err := time.ParseInLocation(time.Stamp, s[:15], now.Location()); err == nil {
			t = t.AddDate(now.Year(), 0, 0)
			// A December message read in January belongs to last year.
			if t.After(now.Add(24 * time.Hour)) {
				t = t.AddDate(-1, 0, 0)
			}
			m.Time = t
			s = s[16:]
			// A host name follows a timestamp unless the next word is the tag.
			if word, rest, ok := strings.Cut(s, " "); ok && !strings.HasSuffix(word, ":") && !strings.Contains(word, "[") {
				m.Hostname, s = clean(word), rest
			}
		}
	}
	// A tag is a word ending in ':' that is not a number (switches put a
	// sequence number there: "<189>34: *Dec  7 ...: %LINK-3-UPDOWN: ...").
	if word, rest, ok := strings.Cut(s, " "); ok && strings.HasSuffix(word, ":") && len(word) > 1 && len(word) <= 48+1 && !allDigits(word[:len(word)-1]) {
		tag := strings.TrimSuffix(word, ":")
		if open := strings.IndexByte(tag, '['); open > 0 && strings.HasSuffix(tag, "]") {
			m.ProcID = clean(tag[open+1 : len(tag)-1])
			tag = tag[:open]
		}
		m.App, s = clean(tag), rest
	}
	m.Text = s
}

func allDigits(s string) bool {
	return strings.Trim(s, "0123456789") == ""
}

// clean makes text safe to store and show: invalid UTF-8 replaced,
// control characters other than tab escaped (a client cannot forge a
// second log line or terminal escapes).
func clean(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f || r == utf8.RuneError }) {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if r < 0x20 && r != '\t' || r == 0x7f {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
