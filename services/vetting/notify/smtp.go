package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"strconv"
	"strings"
	"time"
)

func sendSMTP(ctx context.Context, t Target, m Message) error {
	s := t.SMTP
	from, _ := mail.ParseAddress(s.From) // validated
	var to []*mail.Address
	for _, r := range s.To {
		a, _ := mail.ParseAddress(r)
		to = append(to, a)
	}
	msg, err := compose(from, to, m)
	if err != nil {
		return &Error{Err: err, Permanent: true}
	}
	port := s.Port
	if port == 0 {
		port = 587
		if s.TLS == "implicit" {
			port = 465
		}
	}
	addr := net.JoinHostPort(s.Host, strconv.Itoa(port))
	cfg, err := tlsConfig(t.CAFile, s.Host)
	if err != nil {
		return err
	}

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return classify(fmt.Errorf("connecting to %s: %w", addr, err))
	}
	// The conversation ends when ctx does: the deadline bounds every read
	// and write, and a cancellation closes the connection.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	if s.TLS == "implicit" {
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return classify(fmt.Errorf("TLS with %s: %w", addr, err))
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, s.Host)
	if err != nil {
		return classify(fmt.Errorf("greeting from %s: %w", addr, err))
	}
	defer c.Close()
	if err := deliver(c, s, cfg, from, to, msg); err != nil {
		return classify(fmt.Errorf("%s: %w", addr, err))
	}
	return nil
}

// deliver speaks ESMTP after the greeting: STARTTLS when offered (required
// unless Insecure), AUTH PLAIN only over TLS, then the envelope and data.
func deliver(c *smtp.Client, s *SMTP, cfg *tls.Config, from *mail.Address, to []*mail.Address, msg []byte) error {
	if s.TLS != "implicit" {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(cfg); err != nil {
				return fmt.Errorf("STARTTLS: %w", err)
			}
		} else if !s.Insecure {
			return &Error{Err: errors.New("the server offers no STARTTLS; refusing to send in clear (use a server with TLS, tls: implicit, or insecure: true on a trusted network)"), Permanent: true}
		}
	}
	if s.Username != "" {
		if _, isTLS := c.TLSConnectionState(); !isTLS {
			return &Error{Err: errors.New("the connection is not encrypted; refusing to send the password (remove insecure, or the credentials)"), Permanent: true}
		}
		ok, mechs := c.Extension("AUTH")
		if !ok || !hasWord(mechs, "PLAIN") {
			return &Error{Err: fmt.Errorf("the server offers no AUTH PLAIN (it offers %q); kiln authenticates with PLAIN only", mechs), Permanent: true}
		}
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, s.Host)); err != nil {
			return fmt.Errorf("AUTH PLAIN as %s: %w", s.Username, err)
		}
	}
	if err := c.Mail(from.Address); err != nil {
		return fmt.Errorf("MAIL FROM %s: %w", from.Address, err)
	}
	for _, r := range to {
		if err := c.Rcpt(r.Address); err != nil {
			return fmt.Errorf("RCPT TO %s: %w", r.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("sending the message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("ending the message: %w", err)
	}
	// The message is accepted once DATA ends; a failing QUIT changes nothing.
	c.Quit()
	return nil
}

func hasWord(list, word string) bool {
	for _, w := range strings.Fields(list) {
		if strings.EqualFold(w, word) {
			return true
		}
	}
	return false
}

// compose writes an RFC 5322 message: text/plain in UTF-8, quoted-printable,
// marked as automatically generated (RFC 3834) so autoresponders keep
// quiet. Every header value is one line: nothing from the machine or the
// database can add a header.
func compose(from *mail.Address, to []*mail.Address, m Message) ([]byte, error) {
	var b bytes.Buffer
	header := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	rcpts := make([]string, len(to))
	for i, a := range to {
		rcpts[i] = a.String()
	}
	header("From", from.String())
	header("To", strings.Join(rcpts, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", title(m)))
	header("Date", m.Time.Format(time.RFC1123Z))
	header("Message-ID", messageID(from, m))
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	header("Auto-Submitted", "auto-generated")
	header("X-Kiln-Run", atext(m.RunID))
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(body(m))); err != nil {
		return nil, fmt.Errorf("encoding the body: %w", err)
	}
	if err := qp.Close(); err != nil {
		return nil, fmt.Errorf("encoding the body: %w", err)
	}
	return b.Bytes(), nil
}

// messageID is the same for every retry of one notification, so a mail
// system that already took it can drop the duplicate.
func messageID(from *mail.Address, m Message) string {
	domain := "kiln.invalid"
	if i := strings.LastIndexByte(from.Address, '@'); i >= 0 {
		domain = atext(from.Address[i+1:])
	}
	return fmt.Sprintf("<kiln.%s.%s.%d@%s>", atext(m.RunID), atext(m.Outcome()), m.Time.UnixNano(), domain)
}

// atext keeps the characters a Message-ID part may hold (RFC 5322 atext
// and dots); others become '-'.
func atext(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r) {
			return r
		}
		return '-'
	}, s)
}
