package nfs

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The kernel's export caches kiln answers, as named under /proc/net/rpc.
const (
	cacheIP     = "auth.unix.ip" // client address → auth domain
	cacheExport = "nfsd.export"  // (domain, path) → export options
	cacheFH     = "nfsd.fh"      // (domain, fsid) → path
)

// caches lists them in flush order: addresses first, exports last, so no
// stale mapping leads to a flushed export.
var caches = []string{cacheIP, cacheFH, cacheExport}

// Export flags (include/uapi/linux/nfsd/export.h).
const (
	flagReadOnly      = 0x0001
	flagRootSquash    = 0x0004
	flagNoSubtreeChk  = 0x0400
	flagFSID          = 0x2000
	flagV4Root        = 0x10000
	fsidTypeNum       = 1 // FSID_NUM: a 4-byte fsid in host order
	classNFSD         = "nfsd"
	defaultAnswerTime = 30 * time.Minute
)

// Answerer turns the kernel's cache upcalls into replies from the plan in
// force. It is safe for concurrent use.
type Answerer struct {
	// TTL is how long the kernel may keep an answer; the plan changing
	// flushes the caches anyway.
	TTL time.Duration
	Now func() time.Time
	// Used, when set, hears every export the kernel is told a host may
	// use (host name, export name): a running client re-asks at least every
	// TTL while it uses the export, which is how kiln knows what is in use.
	// It is called with the answerer's lock held and must not block.
	Used func(host, export string)

	// mu guards plan and index.
	mu    sync.Mutex
	plan  Plan
	index map[string]Export // by Path
}

// Set makes p the plan in force and reports whether the kernel's answers
// differ from the previous plan's (exports, their clients, addresses); the
// caller flushes the kernel's caches only then.
func (a *Answerer) Set(p Plan) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.index != nil && a.plan.kernelText() == p.kernelText() {
		a.plan = p // what hosts boot or why some are refused may differ
		return false
	}
	a.plan = p
	a.index = map[string]Export{}
	for _, e := range p.Exports {
		a.index[e.Path] = e
	}
	return true
}

// Plan returns the plan in force.
func (a *Answerer) Plan() Plan {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.plan
}

// Answer replies to one upcall line read from cache's channel. A request for
// something the plan does not allow gets a negative answer (the kernel then
// refuses the client); a malformed one an error.
func (a *Answerer) Answer(cache, request string) (string, error) {
	words, err := splitWords(strings.TrimSuffix(request, "\n"))
	if err != nil {
		return "", fmt.Errorf("%s upcall %q: %w", cache, request, err)
	}
	ttl := a.TTL
	if ttl <= 0 {
		ttl = defaultAnswerTime
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	expiry := strconv.FormatInt(now().Add(ttl).Unix(), 10)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch cache {
	case cacheIP:
		// "<class> <address>" → "<class> <address> <expiry> [<domain>]"
		if len(words) != 2 {
			return "", fmt.Errorf("%s upcall %q: want class and address", cache, request)
		}
		reply := []string{words[0], words[1], expiry}
		if addr, err := netip.ParseAddr(words[1]); err == nil && words[0] == classNFSD {
			if host, ok := a.plan.Clients[addr.Unmap()]; ok {
				reply = append(reply, host)
			}
		}
		return joinWords(reply), nil
	case cacheExport:
		// "<domain> <path>" → "<domain> <path> <expiry> <flags> <anonuid> <anongid> <fsid>"
		if len(words) != 2 {
			return "", fmt.Errorf("%s upcall %q: want domain and path", cache, request)
		}
		reply := []string{words[0], words[1], expiry}
		if e, ok := a.index[words[1]]; ok && allowed(e, words[0]) {
			reply = append(reply, strconv.Itoa(flags(e)), strconv.Itoa(anonID), strconv.Itoa(anonID), strconv.FormatUint(uint64(e.FSID), 10))
			if a.Used != nil && !e.Pseudo {
				a.Used(words[0], e.Name)
			}
		}
		return joinWords(reply), nil
	case cacheFH:
		// "<domain> <fsid type> <fsid>" → "<domain> <fsid type> <fsid> <expiry> [<path>]"
		if len(words) != 3 {
			return "", fmt.Errorf("%s upcall %q: want domain, fsid type and fsid", cache, request)
		}
		reply := []string{words[0], words[1], words[2], expiry}
		if words[1] == strconv.Itoa(fsidTypeNum) && len(words[2]) == 4 {
			id := binary.LittleEndian.Uint32([]byte(words[2]))
			for _, e := range a.plan.Exports {
				if e.FSID == id && allowed(e, words[0]) {
					reply = append(reply, e.Path)
					break
				}
			}
		}
		return joinWords(reply), nil
	}
	return "", fmt.Errorf("unknown cache %q", cache)
}

func allowed(e Export, domain string) bool {
	for _, c := range e.Clients {
		if c == domain {
			return true
		}
	}
	return false
}

// flags are the export options: read-only roots and pseudo directories,
// root squashed only on the pseudo tree (a diskless client boots as root and
// must read root-owned files of its image), never subtree checking (it
// breaks renames and costs a lookup per request), and always the fixed fsid.
func flags(e Export) int {
	f := flagNoSubtreeChk | flagFSID
	if e.ReadOnly {
		f |= flagReadOnly
	}
	if e.Pseudo {
		f |= flagV4Root | flagRootSquash
	}
	return f
}

// splitWords splits an upcall line into words decoded as the kernel's
// qword_add/qword_addhex encode them: "\x" followed by hex digits, or text
// with '\ooo' octal escapes.
func splitWords(line string) ([]string, error) {
	var out []string
	for _, w := range strings.Fields(line) {
		if strings.HasPrefix(w, `\x`) {
			b, err := hex.DecodeString(w[2:])
			if err != nil {
				return nil, fmt.Errorf("bad hex word %q", w)
			}
			out = append(out, string(b))
			continue
		}
		var b strings.Builder
		for i := 0; i < len(w); i++ {
			if w[i] == '\\' && i+3 < len(w) && isOctal(w[i+1]) && isOctal(w[i+2]) && isOctal(w[i+3]) {
				b.WriteByte((w[i+1]-'0')<<6 | (w[i+2]-'0')<<3 | (w[i+3] - '0'))
				i += 3
				continue
			}
			b.WriteByte(w[i])
		}
		out = append(out, b.String())
	}
	return out, nil
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// joinWords encodes words as the kernel's qword_get reads them, ending the
// line: words holding bytes outside printable ASCII (an fsid) go as hex,
// others with space, tab, newline and backslash escaped in octal.
func joinWords(words []string) string {
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		if !printable(w) {
			b.WriteString(`\x` + hex.EncodeToString([]byte(w)))
			continue
		}
		for j := 0; j < len(w); j++ {
			switch c := w[j]; c {
			case ' ', '\t', '\n', '\\':
				fmt.Fprintf(&b, `\%03o`, c)
			default:
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('\n')
	return b.String()
}

func printable(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
