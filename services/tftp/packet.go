package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Opcodes (RFC 1350, RFC 2347).
const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// Error codes (RFC 1350, RFC 2347).
const (
	errCodeUndefined     = 0
	errCodeNotFound      = 1
	errCodeAccess        = 2
	errCodeIllegalOp     = 4
	errCodeUnknownTID    = 5
	errCodeOptionRefused = 8
)

// Limits of the protocol.
const (
	minBlockSize   = 8     // RFC 2348
	maxBlockSize   = 65464 // RFC 2348
	defBlockSize   = 512   // RFC 1350
	maxWindowSize  = 65535 // RFC 7440
	minTimeoutSecs = 1     // RFC 2349
	maxTimeoutSecs = 255   // RFC 2349
	// maxRequestLen bounds a request datagram; a longer one is refused (RFC
	// 1350 requests fit the 512-byte minimum datagram, options make them a
	// little longer, nobody needs more than this).
	maxRequestLen = 1024
	maxOptions    = 16
)

// Transfer modes.
const (
	modeOctet    = "octet"
	modeNetascii = "netascii"
)

// errMalformed is a request that cannot be parsed.
var errMalformed = errors.New("malformed request")

// option is one name/value pair of a request, in the order sent.
type option struct{ name, value string }

// request is a parsed RRQ or WRQ.
type request struct {
	op       uint16
	filename string
	mode     string // lower case
	options  []option
}

// parseRequest parses a read or write request (RFC 1350 §5, RFC 2347):
// opcode, file name, mode and option name/value pairs, each NUL terminated.
// Option names are case-insensitive and lowered; a repeated option keeps its
// first value. Anything else is errMalformed.
func parseRequest(p []byte) (request, error) {
	if len(p) < 4 || len(p) > maxRequestLen {
		return request{}, fmt.Errorf("%w: %d bytes", errMalformed, len(p))
	}
	op := binary.BigEndian.Uint16(p)
	if op != opRRQ && op != opWRQ {
		return request{}, fmt.Errorf("%w: opcode %d is not a request", errMalformed, op)
	}
	body := p[2:]
	if body[len(body)-1] != 0 {
		return request{}, fmt.Errorf("%w: not NUL terminated", errMalformed)
	}
	fields := strings.Split(string(body[:len(body)-1]), "\x00")
	if len(fields) < 2 || len(fields)%2 != 0 {
		return request{}, fmt.Errorf("%w: %d fields", errMalformed, len(fields))
	}
	r := request{op: op, filename: fields[0], mode: strings.ToLower(fields[1])}
	if r.filename == "" {
		return request{}, fmt.Errorf("%w: empty file name", errMalformed)
	}
	seen := map[string]bool{}
	for i := 2; i < len(fields); i += 2 {
		name := strings.ToLower(fields[i])
		if name == "" {
			return request{}, fmt.Errorf("%w: empty option name", errMalformed)
		}
		if seen[name] {
			continue
		}
		if len(r.options) == maxOptions {
			return request{}, fmt.Errorf("%w: more than %d options", errMalformed, maxOptions)
		}
		seen[name] = true
		r.options = append(r.options, option{name, fields[i+1]})
	}
	return r, nil
}

// opts are the negotiated transfer parameters.
type opts struct {
	blockSize  int
	windowSize int
	timeout    int // seconds; 0: the server's own
	// tsize is the transfer size to announce; -1 when not asked or not known.
	tsize int64
}

// limits bound what a client may negotiate.
type limits struct {
	blockSize  int // the largest blksize (MTU cap and config)
	windowSize int // the largest windowsize
	maxTimeout int // the largest timeout option accepted, in seconds
}

// negotiate answers a request's options (RFC 2347): blksize is lowered to
// the cap (RFC 2348), tsize is filled with size when size >= 0 (RFC 2349),
// timeout is accepted as is when within [1, lim.maxTimeout] (RFC 2349 lets
// the server only accept or ignore it), windowsize is lowered to the cap
// (RFC 7440). Unknown and malformed options are left out of the reply. It
// returns the transfer parameters and the OACK's options in request order
// (none: no OACK, the transfer starts with DATA 1 at 512 bytes).
func negotiate(reqOpts []option, size int64, lim limits) (opts, []option) {
	o := opts{blockSize: defBlockSize, windowSize: 1, tsize: -1}
	var ack []option
	for _, op := range reqOpts {
		v, err := strconv.ParseInt(op.value, 10, 64)
		if err != nil || v < 0 || op.value == "" || op.value[0] == '+' {
			continue
		}
		switch op.name {
		case "blksize":
			if v < minBlockSize {
				continue
			}
			b := int(min(v, int64(lim.blockSize), maxBlockSize))
			o.blockSize = b
			ack = append(ack, option{"blksize", strconv.Itoa(b)})
		case "tsize":
			if size < 0 {
				continue
			}
			o.tsize = size
			ack = append(ack, option{"tsize", strconv.FormatInt(size, 10)})
		case "timeout":
			if v < minTimeoutSecs || v > maxTimeoutSecs || v > int64(lim.maxTimeout) {
				continue
			}
			o.timeout = int(v)
			ack = append(ack, option{"timeout", strconv.Itoa(int(v))})
		case "windowsize":
			if v < 1 {
				continue
			}
			w := int(min(v, int64(max(lim.windowSize, 1)), maxWindowSize))
			o.windowSize = w
			ack = append(ack, option{"windowsize", strconv.Itoa(w)})
		}
	}
	return o, ack
}

// appendOACK appends an OACK packet.
func appendOACK(b []byte, options []option) []byte {
	b = binary.BigEndian.AppendUint16(b, opOACK)
	for _, o := range options {
		b = append(b, o.name...)
		b = append(b, 0)
		b = append(b, o.value...)
		b = append(b, 0)
	}
	return b
}

// appendError appends an ERROR packet; msg is cut to keep it short and
// printable.
func appendError(b []byte, code uint16, msg string) []byte {
	b = binary.BigEndian.AppendUint16(b, opERROR)
	b = binary.BigEndian.AppendUint16(b, code)
	if len(msg) > 200 {
		msg = msg[:200]
	}
	b = append(b, strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, msg)...)
	return append(b, 0)
}

// parseReply parses what a reading client sends during a transfer: ACK
// (block number) or ERROR (code and message).
func parseReply(p []byte) (op uint16, block uint16, msg string, err error) {
	if len(p) < 4 {
		return 0, 0, "", fmt.Errorf("%w: %d-byte packet", errMalformed, len(p))
	}
	op = binary.BigEndian.Uint16(p)
	switch op {
	case opACK:
		return op, binary.BigEndian.Uint16(p[2:]), "", nil
	case opERROR:
		m := p[4:]
		if i := bytes.IndexByte(m, 0); i >= 0 {
			m = m[:i]
		}
		return op, binary.BigEndian.Uint16(p[2:]), string(m), nil
	}
	return op, 0, "", fmt.Errorf("%w: opcode %d during a read transfer", errMalformed, op)
}
