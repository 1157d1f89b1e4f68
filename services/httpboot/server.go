package httpboot

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"kiln.dev/kiln/services/internal/bootnonce"
	"kiln.dev/kiln/services/metrics"
)

// ErrUnknownHost is returned by Hosts when no host owns a MAC.
var ErrUnknownHost = errors.New("unknown host")

// Hosts finds the host a MAC belongs to and the machine an address is
// leased to.
type Hosts interface {
	// HostByMAC returns the host owning mac (canonical lower-case colon
	// form), or an error wrapping ErrUnknownHost.
	HostByMAC(ctx context.Context, mac string) (Host, error)
	// LeasedTo returns the MAC (canonical form) whose current lease — bound,
	// unexpired — is ip, or "" when ip has none.
	LeasedTo(ctx context.Context, ip netip.Addr) (string, error)
}

// ErrNoRun is wrapped by VetRuns errors for a vet host with no run to boot.
var ErrNoRun = errors.New("no vetting run")

// VetRuns hands out the tokens of vetting runs.
type VetRuns interface {
	// RunToken returns the bearer token of host's vetting run, which is now
	// booting, or an error wrapping ErrNoRun (its message is shown on the
	// host's console).
	RunToken(ctx context.Context, host string) (string, error)
}

// ErrNoSAN is wrapped by SANLogins errors for an iscsi host that has no
// usable login on kiln's target (its message is shown on the console).
var ErrNoSAN = errors.New("no iSCSI login")

// SANLogins hands out iscsi hosts' logins to kiln's iSCSI target.
type SANLogins interface {
	// SANLogin returns host's login, or an error wrapping ErrNoSAN whose
	// message says what the operator must do. Neither may carry a secret
	// into an error.
	SANLogin(ctx context.Context, host string) (SANLogin, error)
}

// Event kinds.
const (
	KindScript = "script"        // a script was served
	KindDenied = "script_denied" // a refusal script was served
	KindFile   = "kernel"        // an artifact download started
)

// Event is one step of a machine's network boot seen over HTTP.
type Event struct {
	Time   time.Time
	MAC    string // canonical; "" when the request did not name one
	Host   string // "" when unknown
	Client netip.Addr
	Kind   string
	Detail string
}

// EventSink stores boot events.
type EventSink interface {
	AddBootEvent(ctx context.Context, ev Event) error
}

// Options configures the HTTP boot server.
type Options struct {
	// Listen is the TCP address, e.g. ":8080".
	Listen string
	// FilesRoot is the directory served under /files/.
	FilesRoot string
	// IPXERoot is the directory of the iPXE binaries served under /ipxe/ to
	// UEFI HTTP boot clients (DHCP points them at <base>/ipxe/ipxe.efi);
	// empty: no /ipxe/.
	IPXERoot string
	// BaseURL is the URL prefix put in scripts ("http://10.0.0.1:8080").
	// When it returns "", the request's Host is used.
	BaseURL func(client netip.Addr) string
	// Profiles are the site-wide profile settings.
	Profiles Profiles
	// VetImageRoot holds the appliance's own vetting live image (vmlinuz,
	// initrd), served as /files/vet/<name> unless FilesRoot has that file.
	VetImageRoot string
	// DisklessImageRoot holds the appliance's own diskless client image
	// (vmlinuz, initrd), served as /files/diskless/<name> unless FilesRoot
	// has that file.
	DisklessImageRoot string
	// Runs gives vet hosts their run's token; nil: vet hosts are refused.
	Runs VetRuns
	// SAN gives iscsi hosts their login (CHAP) to kiln's target; nil: their
	// scripts name Profiles.IQNPrefix's target without CHAP.
	SAN SANLogins
	// Agent serves the vetting agent protocol under /vet/v1/; nil: 404.
	Agent http.Handler
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Metrics receives the server's families; nil counts nothing.
	Metrics *metrics.Registry
	// EventLimit bounds the boot events stored per source and in total.
	EventLimit EventLimit
	// Nonces redeems the single-use nonces the DHCP service puts in script
	// URLs (?nonce=); nil: only a host's token (?token=, typed at the
	// default menu) opens a script.
	Nonces *bootnonce.Redeemer
	// Register lets machines kiln enrolled by itself register at their
	// console (provisioning.diskless.register); zero: off.
	Register RegisterOptions
	// Neighbor returns the MAC (canonical form) the kernel's neighbour
	// table holds for an on-link ip, or "": it identifies clients on
	// subnets where another server leases the addresses (proxyDHCP). Nil:
	// only leases and reservations identify a client.
	Neighbor func(ip netip.Addr) string
}

// Server serves iPXE scripts and boot artifacts.
type Server struct {
	opts Options
	root *os.Root
	ipxe *os.Root // nil without Options.IPXERoot
	vet  *os.Root // nil without Options.VetImageRoot
	// diskless is nil without Options.DisklessImageRoot.
	diskless *os.Root
	hosts    Hosts
	events   EventSink
	limit    *eventLimiter
	// regLimit bounds the names each source may submit.
	regLimit *eventLimiter
	log      *slog.Logger
}

// New opens the files root and returns a server; events may be nil.
func New(o Options, hosts Hosts, events EventSink, log *slog.Logger) (*Server, error) {
	if o.Listen == "" {
		o.Listen = ":8080"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Profiles == (Profiles{}) {
		o.Profiles = DefaultProfiles()
	}
	if o.FilesRoot == "" {
		return nil, errors.New("HTTP boot files root is not set")
	}
	root, err := os.OpenRoot(o.FilesRoot)
	if err != nil {
		return nil, fmt.Errorf("opening HTTP boot files root %s: %w (create it, or set provisioning.http_boot.root)", o.FilesRoot, err)
	}
	if o.Register.Limit == (EventLimit{}) {
		o.Register.Limit = EventLimit{Burst: 5, Every: 10 * time.Second, TotalBurst: 50, TotalEvery: time.Second}
	}
	s := &Server{opts: o, root: root, hosts: hosts, events: events, limit: newEventLimiter(o.EventLimit),
		regLimit: newEventLimiter(o.Register.Limit), log: log}
	if o.IPXERoot != "" {
		if s.ipxe, err = os.OpenRoot(o.IPXERoot); err != nil {
			root.Close()
			return nil, fmt.Errorf("opening the iPXE directory %s: %w (install the iPXE binaries there or set provisioning.tftp.root)", o.IPXERoot, err)
		}
	}
	if o.VetImageRoot != "" {
		if s.vet, err = os.OpenRoot(o.VetImageRoot); err != nil {
			s.Close()
			return nil, fmt.Errorf("opening the vetting live image directory %s: %w", o.VetImageRoot, err)
		}
	}
	if o.DisklessImageRoot != "" {
		if s.diskless, err = os.OpenRoot(o.DisklessImageRoot); err != nil {
			s.Close()
			return nil, fmt.Errorf("opening the diskless client image directory %s: %w", o.DisklessImageRoot, err)
		}
	}
	return s, nil
}

// Close releases the files root and the iPXE and live image directories.
func (s *Server) Close() error {
	if s.ipxe != nil {
		s.ipxe.Close()
	}
	if s.vet != nil {
		s.vet.Close()
	}
	if s.diskless != nil {
		s.diskless.Close()
	}
	return s.root.Close()
}

// ServeHTTP routes /boot/ and /files/ without http.ServeMux, which would
// redirect unclean paths.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/vet/v1/") && s.opts.Agent != nil {
		s.opts.Agent.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch p := r.URL.Path; {
	case p == "/boot/default.ipxe":
		s.serveDefault(w, r)
	case strings.HasPrefix(p, "/boot/") && strings.HasSuffix(p, "/register"):
		s.serveRegister(w, r, strings.TrimSuffix(strings.TrimPrefix(p, "/boot/"), "/register"))
	case strings.HasPrefix(p, "/boot/") && strings.HasSuffix(p, ".ipxe"):
		s.serveScript(w, r, strings.TrimSuffix(strings.TrimPrefix(p, "/boot/"), ".ipxe"))
	case strings.HasPrefix(p, "/files/vet/") && s.vet != nil && !s.hasFile(strings.TrimPrefix(p, "/files/")):
		s.serveFile(w, r, s.vet, "vet/", strings.TrimPrefix(p, "/files/vet/"))
	case strings.HasPrefix(p, "/files/diskless/") && s.diskless != nil && !s.hasFile(strings.TrimPrefix(p, "/files/")):
		s.serveFile(w, r, s.diskless, "diskless/", strings.TrimPrefix(p, "/files/diskless/"))
	case strings.HasPrefix(p, "/files/"):
		s.serveFile(w, r, s.root, "", strings.TrimPrefix(p, "/files/"))
	case strings.HasPrefix(p, "/ipxe/") && s.ipxe != nil:
		s.serveFile(w, r, s.ipxe, "ipxe/", strings.TrimPrefix(p, "/ipxe/"))
	case p == "/healthz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	default:
		http.NotFound(w, r)
	}
}

// hasFile reports whether the files root has p (the operator's own live
// image wins over the appliance's).
func (s *Server) hasFile(p string) bool {
	name, err := cleanFilePath(p)
	if err != nil {
		return true // let serveFile refuse it
	}
	_, err = s.root.Stat(name)
	return err == nil
}

func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// base returns the URL prefix for scripts sent to r's client.
func (s *Server) base(r *http.Request) string {
	if s.opts.BaseURL != nil {
		if b := s.opts.BaseURL(clientAddr(r)); b != "" {
			return strings.TrimRight(b, "/")
		}
	}
	host := r.Host
	if host == "" || strings.ContainsAny(host, " \t/\\$") {
		host = "localhost"
	}
	return "http://" + host
}

func writeScript(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func (s *Server) serveDefault(w http.ResponseWriter, r *http.Request) {
	b, err := RenderDefault(s.base(r))
	if err != nil {
		s.log.Error("rendering the default menu", "err", err)
		b = RenderDenied("kiln could not render its boot menu")
	}
	writeScript(w, b)
}

// CanonicalMAC parses a MAC in any notation net.ParseMAC accepts and returns
// it lower-case, colon separated.
func CanonicalMAC(s string) (string, bool) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return "", false
	}
	return hw.String(), true
}

func (s *Server) serveScript(w http.ResponseWriter, r *http.Request, rawMAC string) {
	ctx := r.Context()
	ev := Event{Time: s.opts.Now(), Client: clientAddr(r), Kind: KindDenied}
	deny := func(console, detail string) {
		ev.Detail = detail
		level := slog.LevelInfo
		if !s.report(ctx, ev) {
			level = slog.LevelDebug // a flood: its events are suppressed, so are its log lines
		}
		s.log.Log(ctx, level, "boot script refused", "client", ev.Client, "mac", ev.MAC, "host", ev.Host, "reason", detail)
		writeScript(w, RenderDenied(console))
	}
	mac, ok := CanonicalMAC(rawMAC)
	if !ok {
		deny("this URL does not name a MAC address (use /boot/${net0/mac}.ipxe)", "malformed MAC in URL")
		return
	}
	ev.MAC = mac
	h, ok := s.lookupHost(ctx, mac, "no network boot for "+mac+": unknown machine or wrong token", deny)
	if !ok {
		return
	}
	ev.Host = h.Name
	nonce, ok := s.credential(r, mac, h, ev.Client, deny)
	if !ok {
		return
	}
	if ok, err := s.requesterIs(ctx, ev.Client, mac, h); err != nil {
		s.log.Error("looking up the requester's lease", "client", ev.Client, "err", err)
		deny("kiln cannot read its machine database; try again later", "machine database error")
		return
	} else if !ok {
		deny("no network boot for "+mac+" from "+ev.Client.String()+": a script goes only to the address kiln leased or reserved for its machine",
			"requested from "+ev.Client.String()+", not the MAC's lease or reservation")
		return
	}
	if nonce != "" {
		// Used up only now that every other check passed: a refusal above
		// leaves the nonce to its machine.
		hw, _ := net.ParseMAC(mac)
		if _, err := s.opts.Nonces.Redeem(nonce, hw, ev.Client, s.opts.Now()); err != nil {
			deny(nonceRefusal(mac, ev.Client, err), "nonce refused: "+err.Error())
			return
		}
	}
	if h.Enrolled && s.opts.Register.enabled() {
		s.serveRegisterForm(ctx, w, r, ev)
		return
	}
	s.bootHost(ctx, w, r, h, ev, deny)
}

// bootHost serves h's boot script once the request is known to come from
// h's machine; deny answers a refusal.
func (s *Server) bootHost(ctx context.Context, w http.ResponseWriter, r *http.Request, h Host, ev Event, deny func(console, detail string)) {
	mac := ev.MAC
	if h.Profile == ProfileVet {
		if s.opts.Runs == nil {
			deny("vetting is not available on this appliance", "no vetting orchestrator")
			return
		}
		tok, err := s.opts.Runs.RunToken(ctx, h.Name)
		if errors.Is(err, ErrNoRun) {
			deny(err.Error(), "no vetting run")
			return
		}
		if err != nil {
			s.log.Error("starting the vetting run", "host", h.Name, "err", err)
			deny("kiln could not start the vetting run of "+h.Name+"; see the httpboot log", err.Error())
			return
		}
		h.RunToken = tok
	}
	if h.Profile == ProfileISCSI && s.opts.SAN != nil {
		login, err := s.opts.SAN.SANLogin(ctx, h.Name)
		if errors.Is(err, ErrNoSAN) {
			deny(err.Error(), "no iSCSI login")
			return
		}
		if err != nil {
			s.log.Error("reading the iSCSI login", "host", h.Name, "err", err)
			deny("kiln could not read the iSCSI login of "+h.Name+"; see the httpboot log", "iSCSI login error")
			return
		}
		h.SAN = &login
	}
	b, err := RenderScript(h, mac, s.base(r), s.opts.Profiles)
	if err != nil {
		var rec errRecord
		if errors.As(err, &rec) {
			deny(rec.msg, rec.msg)
			return
		}
		s.log.Error("rendering boot script", "host", h.Name, "err", err)
		deny("kiln could not render the boot script of "+h.Name, err.Error())
		return
	}
	ev.Kind, ev.Detail = KindScript, "profile "+h.Profile
	s.log.Info("boot script served", "client", ev.Client, "mac", mac, "host", h.Name, "profile", h.Profile)
	s.report(ctx, ev)
	writeScript(w, b)
}

// lookupHost returns the host owning mac, or answers with deny (unknown:
// the console message) and returns false.
func (s *Server) lookupHost(ctx context.Context, mac, unknown string, deny func(console, detail string)) (Host, bool) {
	h, err := s.hosts.HostByMAC(ctx, mac)
	switch {
	case errors.Is(err, ErrUnknownHost):
		deny(unknown, "unknown MAC")
		return Host{}, false
	case err != nil:
		s.log.Error("looking up host", "mac", mac, "err", err)
		deny("kiln cannot read its machine database; try again later", "machine database error")
		return Host{}, false
	}
	return h, true
}

// credential checks what the URL presents for h: this DHCP exchange's
// nonce (?nonce=, from a DHCP reply), checked here but redeemed only once
// the requester is known to be the machine, or the host's token (?token=,
// typed at the default menu's prompt). It returns the nonce to redeem ("":
// the token was used) and false after answering with deny.
func (s *Server) credential(r *http.Request, mac string, h Host, client netip.Addr, deny func(console, detail string)) (string, bool) {
	q := r.URL.Query()
	if nonce := q.Get("nonce"); nonce != "" {
		if s.opts.Nonces == nil {
			deny("no network boot for "+mac+": unknown machine or wrong token", "nonce in URL, but this server redeems none")
			return "", false
		}
		hw, _ := net.ParseMAC(mac)
		t, err := s.opts.Nonces.Check(nonce, hw, client, s.opts.Now())
		if err != nil {
			detail := "nonce refused: " + err.Error()
			if !t.Expires.IsZero() {
				detail += " (" + t.String() + ")"
			}
			deny(nonceRefusal(mac, client, err), detail)
			return "", false
		}
		return nonce, true
	}
	token := q.Get("token")
	if h.Token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(h.Token)) != 1 {
		detail := "wrong token"
		if token == "" {
			detail = "no token in URL"
		}
		deny("no network boot for "+mac+": unknown machine or wrong token", detail)
		return "", false
	}
	return "", true
}

// nonceRefusal is the console message for a refused nonce: what to do
// when it is only stale, nothing that helps a forger otherwise.
func nonceRefusal(mac string, client netip.Addr, err error) string {
	switch {
	case errors.Is(err, bootnonce.ErrExpired), errors.Is(err, bootnonce.ErrUsed), errors.Is(err, bootnonce.ErrStale):
		return "no network boot for " + mac + ": this boot URL is used up or expired (each DHCP exchange gives one script); reboot the machine to try again"
	case errors.Is(err, bootnonce.ErrOtherAddress):
		return "no network boot for " + mac + " from " + client.String() + ": this boot URL was handed out for another address"
	}
	return "no network boot for " + mac + ": unknown machine or wrong token"
}

// requesterIs reports whether client is the machine with mac: its
// reservation, its current lease, or (on-link) its neighbour entry. A
// script carries per-host secrets (tokens), so the MAC in the URL and the
// token — which crossed the LAN in a broadcast DHCP reply — are not enough.
func (s *Server) requesterIs(ctx context.Context, client netip.Addr, mac string, h Host) (bool, error) {
	if !client.IsValid() {
		return false, nil
	}
	if h.Reserved.IsValid() && h.Reserved == client {
		return true, nil
	}
	holder, err := s.hosts.LeasedTo(ctx, client)
	if err != nil {
		return false, err
	}
	if holder == mac {
		return true, nil
	}
	return s.opts.Neighbor != nil && s.opts.Neighbor(client) == mac, nil
}

// serveFile serves p below root; prefix names the tree in events ("" for
// /files/, "ipxe/" for /ipxe/).
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, root *os.Root, prefix, p string) {
	name, err := cleanFilePath(p)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Info("artifact refused", "path", name, "err", err)
		}
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	if r.Method == http.MethodGet {
		if rng := r.Header.Get("Range"); rng == "" || strings.HasPrefix(rng, "bytes=0-") {
			ev := Event{Time: s.opts.Now(), Client: clientAddr(r), Kind: KindFile, Detail: prefix + name}
			if mac, ok := CanonicalMAC(r.URL.Query().Get("mac")); ok {
				ev.MAC = mac
			}
			s.report(r.Context(), ev)
		}
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ctype)
	// ServeContent handles Range, If-Modified-Since and Content-Length; with
	// an *os.File the body goes out with sendfile.
	http.ServeContent(w, r, name, st.ModTime(), f)
}

// report stores ev unless its source is over its EventLimit; it says
// whether ev was kept.
func (s *Server) report(ctx context.Context, ev Event) bool {
	if s.events == nil {
		return true
	}
	ok, suppressed := s.limit.allow(ev.Client, ev.Time)
	if !ok {
		return false
	}
	if suppressed > 0 {
		ev.Detail += fmt.Sprintf(" (%d more events from %s suppressed before this one)", suppressed, sourceKey(ev.Client))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.events.AddBootEvent(ctx, ev); err != nil {
		s.log.Debug("storing boot event", "kind", ev.Kind, "mac", ev.MAC, "err", err)
	}
	return true
}

// Serve answers HTTP on ln until ctx is cancelled; ready is called once
// serving.
func (s *Server) Serve(ctx context.Context, ln net.Listener, ready func()) error {
	srv := &http.Server{
		Handler:           metered(s.opts.Metrics, s),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	if ready != nil {
		ready()
	}
	s.log.Info("HTTP boot serving", "addr", ln.Addr().String(), "files", s.opts.FilesRoot)
	select {
	case err := <-done:
		return fmt.Errorf("serving HTTP boot: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}
