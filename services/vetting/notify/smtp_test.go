package notify

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSMTP is a small ESMTP server on 127.0.0.1 speaking enough of RFC 5321
// (EHLO, STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT) to
// receive what Send writes.
type fakeSMTP struct {
	cert        tls.Certificate
	offerTLS    bool   // advertise STARTTLS
	implicitTLS bool   // TLS from the first byte (port 465 style)
	user, pass  string // accepted AUTH PLAIN credentials; "" offers no AUTH
	authInClear bool   // advertise AUTH before TLS too
	rcptReply   string // answer to RCPT TO instead of 250

	ln       net.Listener
	sessions chan *session
}

// session is what one connection carried.
type session struct {
	TLS      bool
	Auth     string // user:pass as received
	From     string
	To       []string
	Data     string
	Commands []string
}

func (f *fakeSMTP) start(t *testing.T) (host string, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ln, f.sessions = ln, make(chan *session, 4)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.serve(t, c)
			}()
		}
	}()
	a := ln.Addr().(*net.TCPAddr)
	return "127.0.0.1", a.Port
}

func (f *fakeSMTP) serve(t *testing.T, c net.Conn) {
	s := &session{}
	defer func() { c.Close(); f.sessions <- s }()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cfg := &tls.Config{Certificates: []tls.Certificate{f.cert}}
	if f.implicitTLS {
		c = tls.Server(c, cfg)
		s.TLS = true
	}
	r := bufio.NewReader(c)
	reply := func(lines ...string) {
		for _, l := range lines {
			io.WriteString(c, l+"\r\n")
		}
	}
	reply("220 fake.test ESMTP ready")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		s.Commands = append(s.Commands, verb)
		switch verb {
		case "EHLO":
			lines := []string{"250-fake.test greets " + arg}
			if f.offerTLS && !s.TLS {
				lines = append(lines, "250-STARTTLS")
			}
			if f.user != "" && (s.TLS || f.authInClear) {
				lines = append(lines, "250-AUTH LOGIN PLAIN")
			}
			reply(append(lines, "250 8BITMIME")...)
		case "HELO", "RSET", "NOOP":
			reply("250 ok")
		case "STARTTLS":
			reply("220 2.0.0 go ahead")
			tc := tls.Server(c, cfg)
			if err := tc.Handshake(); err != nil {
				t.Logf("fake SMTP: TLS handshake: %v", err)
				return
			}
			c, r, s.TLS = tc, bufio.NewReader(tc), true
		case "AUTH":
			mech, resp, _ := strings.Cut(arg, " ")
			raw, _ := base64.StdEncoding.DecodeString(resp)
			parts := strings.Split(string(raw), "\x00")
			if strings.ToUpper(mech) != "PLAIN" || len(parts) != 3 {
				reply("504 5.5.4 unsupported")
				continue
			}
			s.Auth = parts[1] + ":" + parts[2]
			if parts[1] == f.user && parts[2] == f.pass {
				reply("235 2.7.0 authenticated")
			} else {
				reply("535 5.7.8 authentication credentials invalid")
			}
		case "MAIL":
			s.From = arg
			reply("250 2.1.0 ok")
		case "RCPT":
			s.To = append(s.To, arg)
			if f.rcptReply != "" {
				reply(f.rcptReply)
			} else {
				reply("250 2.1.5 ok")
			}
		case "DATA":
			reply("354 end with <CRLF>.<CRLF>")
			var data strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, ".")) // undo dot-stuffing
			}
			s.Data = data.String()
			reply("250 2.0.0 queued as 1")
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			reply("502 5.5.2 unknown command")
		}
	}
}

func (f *fakeSMTP) session(t *testing.T) *session {
	t.Helper()
	select {
	case s := <-f.sessions:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("the fake SMTP server saw no session")
		return nil
	}
}

func smtpTarget(host string, port int, caFile string) Target {
	return Target{Name: "mail", Kind: KindSMTP, CAFile: caFile, SMTP: &SMTP{Host: host, Port: port,
		Username: "kiln", Password: "pw", From: "Kiln Appliance <kiln@example.com>", To: []string{"hw@example.com", "Ops <ops@example.com>"}}}
}

func TestSMTPStartTLS(t *testing.T) {
	cert, caFile := testCert(t)
	f := &fakeSMTP{cert: cert, offerTLS: true, user: "kiln", pass: "pw"}
	host, port := f.start(t)
	m := failMessage()
	m.Findings = append(m.Findings, ".a line that starts with a dot", strings.Repeat("long line ", 20))
	if err := Send(t.Context(), smtpTarget(host, port, caFile), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	s := f.session(t)
	if !s.TLS || s.Auth != "kiln:pw" || !strings.HasPrefix(s.From, "FROM:<kiln@example.com>") || strings.Join(s.To, " ") != "TO:<hw@example.com> TO:<ops@example.com>" {
		t.Errorf("session = %+v, want TLS, AUTH and the envelope", s)
	}
	if got := strings.Join(s.Commands, " "); !strings.HasPrefix(got, "EHLO STARTTLS EHLO AUTH MAIL RCPT RCPT DATA") {
		t.Errorf("commands = %s, want STARTTLS before AUTH", got)
	}

	msg, err := mail.ReadMessage(strings.NewReader(s.Data))
	if err != nil {
		t.Fatalf("the message does not parse as RFC 5322: %v\n%s", err, s.Data)
	}
	h := msg.Header
	subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil || subject != "[kiln] r650-04: FAIL" {
		t.Errorf("Subject = %q (%v), want host and verdict", subject, err)
	}
	if from, err := mail.ParseAddress(h.Get("From")); err != nil || from.Address != "kiln@example.com" || from.Name != "Kiln Appliance" {
		t.Errorf("From = %q", h.Get("From"))
	}
	if to, err := h.AddressList("To"); err != nil || len(to) != 2 || to[1].Name != "Ops" {
		t.Errorf("To = %q (%v)", h.Get("To"), err)
	}
	if d, err := h.Date(); err != nil || !d.Equal(testTime) {
		t.Errorf("Date = %q (%v), want %v", h.Get("Date"), err, testTime)
	}
	if id := h.Get("Message-ID"); !regexp.MustCompile(`^<kiln\.42\.fail\.\d+@example\.com>$`).MatchString(id) {
		t.Errorf("Message-ID = %q", id)
	}
	for k, want := range map[string]string{"Content-Type": "text/plain; charset=utf-8", "Content-Transfer-Encoding": "quoted-printable",
		"Mime-Version": "1.0", "Auto-Submitted": "auto-generated", "X-Kiln-Run": "42"} {
		if h.Get(k) != want {
			t.Errorf("%s = %q, want %q", k, h.Get(k), want)
		}
	}
	for _, line := range strings.Split(s.Data, "\r\n") {
		if len(line) > 78 {
			t.Errorf("line of %d bytes in the message: %q", len(line), line)
		}
	}
	text, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"- [spec] FAIL memory.installed_bytes: expected ≥ 64 GiB, got 2 GiB", "- .a line that starts with a dot",
		"Report: " + m.ReportURL, strings.TrimSpace(strings.Repeat("long line ", 20))} {
		if !strings.Contains(string(text), want) {
			t.Errorf("body lacks %q:\n%s", want, text)
		}
	}
}

func TestSMTPImplicitTLS(t *testing.T) {
	cert, caFile := testCert(t)
	f := &fakeSMTP{cert: cert, implicitTLS: true, user: "kiln", pass: "pw"}
	host, port := f.start(t)
	target := smtpTarget(host, port, caFile)
	target.SMTP.TLS = "implicit"
	if err := Send(t.Context(), target, failMessage()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if s := f.session(t); !s.TLS || s.Auth != "kiln:pw" || s.Data == "" {
		t.Errorf("session = %+v, want a delivery over TLS", s)
	}
}

func TestSMTPRefusals(t *testing.T) {
	cert, caFile := testCert(t)
	for _, tc := range []struct {
		name      string
		server    fakeSMTP
		target    func(Target) Target
		permanent bool
		want      string // in the error
		delivered bool
		noAuth    bool // the password never left
	}{
		{name: "no STARTTLS is refused", server: fakeSMTP{user: "kiln", pass: "pw", authInClear: true}, permanent: true, want: "offers no STARTTLS", noAuth: true},
		{name: "insecure sends in clear without credentials", server: fakeSMTP{},
			target: func(t Target) Target { t.SMTP.Insecure, t.SMTP.Username, t.SMTP.Password = true, "", ""; return t }, delivered: true},
		{name: "insecure never sends the password in clear", server: fakeSMTP{user: "kiln", pass: "pw", authInClear: true},
			target: func(t Target) Target { t.SMTP.Insecure = true; return t }, permanent: true, want: "refusing to send the password", noAuth: true},
		{name: "insecure still uses STARTTLS when offered", server: fakeSMTP{offerTLS: true, user: "kiln", pass: "pw"},
			target: func(t Target) Target { t.SMTP.Insecure = true; return t }, delivered: true},
		{name: "wrong password", server: fakeSMTP{offerTLS: true, user: "kiln", pass: "other"}, permanent: true, want: "535"},
		{name: "no AUTH PLAIN", server: fakeSMTP{offerTLS: true}, permanent: true, want: "offers no AUTH PLAIN", noAuth: true},
		{name: "recipient refused", server: fakeSMTP{offerTLS: true, user: "kiln", pass: "pw", rcptReply: "550 5.1.1 no such user"}, permanent: true, want: "RCPT TO hw@example.com: 550"},
		{name: "recipient deferred", server: fakeSMTP{offerTLS: true, user: "kiln", pass: "pw", rcptReply: "451 4.3.0 try again later"}, permanent: false, want: "451"},
		{name: "untrusted certificate", server: fakeSMTP{offerTLS: true, user: "kiln", pass: "pw"},
			target: func(t Target) Target { t.CAFile = ""; return t }, permanent: true, want: "ca_file", noAuth: true},
		{name: "implicit TLS against a plain server", server: fakeSMTP{user: "kiln", pass: "pw"},
			target: func(t Target) Target { t.SMTP.TLS = "implicit"; t.Timeout = 2 * time.Second; return t }, permanent: true, want: "does not speak TLS", noAuth: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.server
			f.cert = cert
			host, port := f.start(t)
			target := smtpTarget(host, port, caFile)
			if tc.target != nil {
				target = tc.target(target)
			}
			err := Send(t.Context(), target, failMessage())
			s := f.session(t)
			if tc.delivered {
				if err != nil || s.Data == "" {
					t.Fatalf("Send = %v, data %q; want a delivery", err, s.Data)
				}
				return
			}
			if err == nil || IsPermanent(err) != tc.permanent || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Send = %v (permanent %v), want permanent %v containing %q", err, IsPermanent(err), tc.permanent, tc.want)
			}
			if s.Data != "" {
				t.Errorf("a message was delivered despite %v", err)
			}
			if tc.noAuth && s.Auth != "" {
				t.Errorf("credentials %q were sent", s.Auth)
			}
		})
	}
}

func TestSMTPUnreachableIsRetryable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	err = Send(t.Context(), smtpTarget("127.0.0.1", port, ""), failMessage())
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(port)) {
		t.Errorf("Send to a closed port = %v, want a retryable error naming the address", err)
	}

	// A server that accepts and then says nothing: the attempt ends at the
	// timeout.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	target := smtpTarget("127.0.0.1", silent.Addr().(*net.TCPAddr).Port, "")
	target.Timeout = 200 * time.Millisecond
	start := time.Now()
	err = Send(t.Context(), target, failMessage())
	if err == nil || IsPermanent(err) || time.Since(start) > 3*time.Second {
		t.Errorf("Send to a silent server = %v after %v, want a retryable error after about 200ms", err, time.Since(start))
	}
}

// TestComposeHeaderInjection: a host name or run ID from the database
// cannot add header lines.
func TestComposeHeaderInjection(t *testing.T) {
	from, _ := mail.ParseAddress("kiln@example.com")
	to, _ := mail.ParseAddress("hw@example.com")
	m := failMessage()
	m.Host = "evil\r\nBcc: victim@example.com"
	m.RunID = "42\r\nX-Injected: yes"
	msg, err := compose(from, []*mail.Address{to}, m)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := mail.ReadMessage(strings.NewReader(string(msg)))
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Header.Get("Bcc") != "" || parsed.Header.Get("X-Injected") != "" {
		t.Errorf("injected headers present: %v", parsed.Header)
	}
	if id := parsed.Header.Get("Message-ID"); strings.ContainsAny(id, " \r\n") {
		t.Errorf("Message-ID = %q", id)
	}
}
