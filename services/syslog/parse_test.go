package syslog

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

var now = time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want Message
		err  error
	}{
		{"RFC 5424 example 1", "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8",
			Message{Facility: 4, Severity: 2, Time: time.Date(2003, 10, 11, 22, 14, 15, 3e6, time.UTC), Hostname: "mymachine.example.com", App: "su", MsgID: "ID47",
				Text: "'su root' failed for lonvick on /dev/pts/8", Format: FormatRFC5424}, nil},
		{"RFC 5424 structured data, no message", `<165>1 2003-10-11T22:14:15.003000-07:00 mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]`,
			Message{Facility: 20, Severity: 5, Time: time.Date(2003, 10, 11, 22, 14, 15, 3e6, time.FixedZone("", -7*3600)), Hostname: "mymachine.example.com", App: "evntslog", MsgID: "ID47",
				Text: `[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]`, Format: FormatRFC5424}, nil},
		{"RFC 5424 SD with an escaped ] and a message", `<165>1 - host app 42 - [a x="q\]"][b] hello`,
			Message{Facility: 20, Severity: 5, Hostname: "host", App: "app", ProcID: "42", Text: `[a x="q\]"][b] hello`, Format: FormatRFC5424}, nil},
		{"logger(1) --rfc5424", "<13>1 2026-12-07T15:00:01.123456+00:00 pc-07 root - - [timeQuality tzKnown=\"1\" isSynced=\"0\"] booted",
			Message{Facility: 1, Severity: 5, Time: time.Date(2026, 12, 7, 15, 0, 1, 123456000, time.UTC), Hostname: "pc-07", App: "root",
				Text: `[timeQuality tzKnown="1" isSynced="0"] booted`, Format: FormatRFC5424}, nil},
		{"RFC 3164 full", "<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed",
			Message{Facility: 4, Severity: 2, Time: time.Date(2026, 10, 11, 22, 14, 15, 0, time.UTC), Hostname: "mymachine", App: "su", ProcID: "230",
				Text: "'su root' failed", Format: FormatRFC3164}, nil},
		{"RFC 3164 December read in January", "<13>Dec 31 23:59:59 h t: x",
			Message{Facility: 1, Severity: 5, Time: time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC), Hostname: "h", App: "t", Text: "x", Format: FormatRFC3164}, nil},
		{"RFC 3164 without host (busybox syslogd -R)", "<30>Dec  7 14:59:00 udhcpc: lease obtained",
			Message{Facility: 3, Severity: 6, Time: time.Date(2026, 12, 7, 14, 59, 0, 0, time.UTC), App: "udhcpc", Text: "lease obtained", Format: FormatRFC3164}, nil},
		{"rsyslog traditional forwarding", "<30>Dec  7 14:58:12 pc-07 systemd[1]: Started Journal Service.",
			Message{Facility: 3, Severity: 6, Time: time.Date(2026, 12, 7, 14, 58, 12, 0, time.UTC), Hostname: "pc-07", App: "systemd", ProcID: "1",
				Text: "Started Journal Service.", Format: FormatRFC3164}, nil},
		{"rsyslog RFC 5424 forwarding", "<86>1 2026-12-07T14:58:12.345678+01:00 pc-07 sshd 812 - - Accepted publickey for root from 10.0.0.1 port 52144 ssh2",
			Message{Facility: 10, Severity: 6, Time: time.Date(2026, 12, 7, 14, 58, 12, 345678000, time.FixedZone("", 3600)), Hostname: "pc-07", App: "sshd", ProcID: "812",
				Text: "Accepted publickey for root from 10.0.0.1 port 52144 ssh2", Format: FormatRFC5424}, nil},
		{"systemd-netlogd (journald forwarding)", "<30>1 2026-12-07T14:58:12.123456Z pc-07 systemd 1 - - Reached target multi-user.target - Multi-User System.",
			Message{Facility: 3, Severity: 6, Time: time.Date(2026, 12, 7, 14, 58, 12, 123456000, time.UTC), Hostname: "pc-07", App: "systemd", ProcID: "1",
				Text: "Reached target multi-user.target - Multi-User System.", Format: FormatRFC5424}, nil},
		{"switch (Cisco IOS, sequence number first)", "<189>34: *Dec  7 14:58:12.123: %LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to up",
			Message{Facility: 23, Severity: 5, Text: "34: *Dec  7 14:58:12.123: %LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to up", Format: FormatRFC3164}, nil},
		{"RFC 3164 no timestamp", "<6>kernel: [    0.000000] Linux version 6.1",
			Message{Severity: 6, App: "kernel", Text: "[    0.000000] Linux version 6.1", Format: FormatRFC3164}, nil},
		{"bare text after PRI", "<191>just text",
			Message{Facility: 23, Severity: 7, Text: "just text", Format: FormatRFC3164}, nil},
		{"trailing newline and NUL dropped", "<14>t: hi\r\n\x00",
			Message{Facility: 1, Severity: 6, App: "t", Text: "hi", Format: FormatRFC3164}, nil},
		{"control characters escaped", "<14>t: a\x1b[31mred\nforged line",
			Message{Facility: 1, Severity: 6, App: "t", Text: `a\x1b[31mred\x0aforged line`, Format: FormatRFC3164}, nil},
		{"invalid UTF-8 replaced", "<14>t: \xff\xfe",
			Message{Facility: 1, Severity: 6, App: "t", Text: "\uFFFD", Format: FormatRFC3164}, nil},
		{"PRI 192 refused", "<192>x", Message{}, ErrNoPRI},
		{"PRI with leading zero refused", "<01>x", Message{}, ErrNoPRI},
		{"no PRI", "hello", Message{}, ErrNoPRI},
		{"empty", "", Message{}, ErrNoPRI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.in), now.AddDate(0, 0, 0))
			if tc.name == "RFC 3164 December read in January" {
				got, err = Parse([]byte(tc.in), time.Date(2026, 1, 1, 0, 0, 5, 0, time.UTC))
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("Parse(%q) error = %v, want %v", tc.in, err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
	long := "<14>t: " + strings.Repeat("x", 2*MaxMessage)
	if m, err := Parse([]byte(long), now); err != nil || len(m.Text) != MaxMessage-len("<14>t: ") {
		t.Errorf("Parse(%d bytes) kept %d bytes of text, %v; want it cut at %d", len(long), len(m.Text), err, MaxMessage)
	}
}

// FuzzParse: anything parses or is refused cleanly; what is kept has no
// control characters (one stored message is one line) and is valid UTF-8.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"<34>1 2003-10-11T22:14:15.003Z host su - ID47 - msg", "<34>Oct 11 22:14:15 h su[1]: x", `<1>1 - - - - - [a b="]"] x`, "<0>", "<9"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b, now)
		if err != nil {
			return
		}
		if m.Facility < 0 || m.Facility > 23 || m.Severity < 0 || m.Severity > 7 {
			t.Fatalf("Parse(%q) = facility %d severity %d", b, m.Facility, m.Severity)
		}
		for _, f := range []string{m.Hostname, m.App, m.ProcID, m.MsgID, m.Text} {
			if strings.ContainsFunc(f, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) || !utf8.ValidString(f) {
				t.Fatalf("Parse(%q) kept a control character or invalid UTF-8: %q", b, f)
			}
		}
	})
}

func TestReadFrame(t *testing.T) {
	big := strings.Repeat("y", MaxMessage+100)
	for _, tc := range []struct {
		name string
		in   string
		want []string
		err  error // after the frames
	}{
		{"octet counting", "11 <14>t: abcd9 <14>t: xy", []string{"<14>t: abcd", "<14>t: xy"}, io.EOF},
		{"octet counting keeps newlines inside", "13 <14>t: ab\ncd\n\n", []string{"<14>t: ab\ncd\n"}, io.EOF},
		{"non-transparent", "<14>t: a\n<14>t: b\r\n", []string{"<14>t: a\n", "<14>t: b\r\n"}, io.EOF},
		{"mixed, blank lines between", "<14>t: a\n\n\n9 <14>t: xy<14>t: c", []string{"<14>t: a\n", "<14>t: xy", "<14>t: c"}, io.EOF},
		{"over-long counted frame cut, next frame intact", "8292 " + "<1>" + big[:8289] + "7 <14>t: ", []string{"<1>" + big[:MaxMessage-3], "<14>t: "}, io.EOF},
		{"over-long line cut, next line intact", "<1>" + big + "\n<14>t: b\n", []string{("<1>" + big)[:MaxMessage], "<14>t: b\n"}, io.EOF},
		{"count too large", "1234567 x", nil, ErrFrame},
		{"count not a number", "12a <14>x", nil, ErrFrame},
		{"truncated counted frame", "20 <14>t: short", nil, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tc.in), MaxMessage+16)
			var got []string
			var err error
			for {
				var b []byte
				if b, err = readFrame(r); err != nil {
					break
				}
				got = append(got, string(b))
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("readFrame error = %v, want %v", err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("frames (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzReadFrame: any stream ends in an error (never a hang or a panic) and
// no frame is over MaxMessage.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte("11 <14>t: abcd<14>t: b\n"))
	f.Add([]byte("99999 x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(b), MaxMessage+16)
		for range len(b) + 1 {
			m, err := readFrame(r)
			if err != nil {
				return
			}
			if len(m) > MaxMessage {
				t.Fatalf("frame of %d bytes", len(m))
			}
		}
		t.Fatalf("%d bytes gave more than %d frames", len(b), len(b)+1)
	})
}
