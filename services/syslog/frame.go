package syslog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// ErrFrame is returned for a TCP stream that breaks RFC 6587 framing
// beyond repair (an octet count that is not a number); the connection is
// closed.
var ErrFrame = errors.New("bad syslog frame")

// readFrame reads one message from a TCP stream (RFC 6587): octet counting
// ("LEN SP MSG") when the frame starts with a digit, else non-transparent
// framing (the message ends at LF).
// Messages over MaxMessage are cut and the rest of the frame skipped, so a
// sender cannot make kiln buffer without bound. r must have a buffer of at
// least MaxMessage bytes.
func readFrame(r *bufio.Reader) ([]byte, error) {
	c, err := r.ReadByte()
	for err == nil && (c == '\n' || c == '\r' || c == ' ') {
		c, err = r.ReadByte() // empty frames between messages
	}
	if err != nil {
		return nil, err
	}
	if c >= '1' && c <= '9' {
		return readCounted(r, int(c-'0'))
	}
	r.UnreadByte()
	line, err := r.ReadSlice('\n')
	switch {
	case err == nil:
		return append([]byte(nil), line[:min(len(line), MaxMessage)]...), nil
	case errors.Is(err, bufio.ErrBufferFull):
		out := append([]byte(nil), line[:min(len(line), MaxMessage)]...)
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = r.ReadSlice('\n')
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return out, nil
	case errors.Is(err, io.EOF) && len(line) > 0:
		return append([]byte(nil), line...), nil // last message without LF
	}
	return nil, err
}

// readCounted reads the rest of "LEN SP MSG" after LEN's first digit.
func readCounted(r *bufio.Reader, n int) ([]byte, error) {
	for digits := 1; ; digits++ {
		c, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if c == ' ' {
			break
		}
		if c < '0' || c > '9' || digits >= 6 {
			return nil, fmt.Errorf("%w: octet count is not a number below 1000000", ErrFrame)
		}
		n = n*10 + int(c-'0')
	}
	msg := make([]byte, min(n, MaxMessage))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	if n > MaxMessage {
		if _, err := r.Discard(n - MaxMessage); err != nil {
			return nil, err
		}
	}
	return msg, nil
}
