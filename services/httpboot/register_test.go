package httpboot

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
)

func TestGoldenRegisterScripts(t *testing.T) {
	ticket := "TICKET"
	for _, tc := range []struct {
		golden string
		render func() ([]byte, error)
	}{
		{"register.ipxe", func() ([]byte, error) {
			return RenderRegisterForm(testMAC, testBase, ticket, []string{"room-a", "room-b"}, nil)
		}},
		{"register-noroles.ipxe", func() ([]byte, error) {
			return RenderRegisterForm(testMAC, testBase, ticket, nil, []string{"pc-01 already exists", "a $bad\nnote"})
		}},
		{"register-wait.ipxe", func() ([]byte, error) {
			return RenderRegisterWait(testMAC, testBase, ticket, "pc-07", 10*time.Second)
		}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			b, err := tc.render()
			if err != nil {
				t.Fatal(err)
			}
			checkFallsThrough(t, tc.golden, b)
			golden(t, tc.golden, b)
		})
	}
}

// registerFixture is a machine database with two machines kiln enrolled
// (macA leased 10.0.0.50, macB leased 10.0.0.51), a registered host pc-01
// (macC) and a promoted root image contest/1 that role room-a boots.
type registerFixture struct {
	st  *store.Store
	now time.Time
}

func newRegisterFixture(t *testing.T) registerFixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Unix(1_700_000_000, 0)
	if _, err := st.AddRootImage(ctx, store.RootImage{Name: "contest", Version: 1, Promoted: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateHost(ctx, store.Host{Name: "pc-01", MACs: []string{macC}}); err != nil {
		t.Fatal(err)
	}
	for mac, ip := range map[string]string{macA: "10.0.0.50", macB: "10.0.0.51"} {
		if _, _, err := st.EnrollUnknown(ctx, mac); err != nil {
			t.Fatal(err)
		}
		if err := st.PutLease(ctx, store.Lease{IP: netip.MustParseAddr(ip), Subnet: "a", MAC: mac, State: store.LeaseBound, Expires: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	return registerFixture{st: st, now: now}
}

func (f registerFixture) server(t *testing.T, policy string) (*Server, *recorder) {
	t.Helper()
	root, _ := filesRoot(t)
	rec := &recorder{}
	cfg := config.Provisioning{NFS: config.NFSService{Roles: map[string]config.NFSRole{"room-a": {RootImage: "contest"}}}}
	reg := RegisterOptionsFromConfig(config.Registration{Enabled: true, Policy: policy, Roles: []string{"room-a", "room-b"}},
		storeRegistrations{f.st}, testNonceKey)
	s, err := New(Options{FilesRoot: root, Now: func() time.Time { return f.now }, Register: reg,
		EventLimit: EventLimit{Burst: 1000, Every: time.Millisecond, TotalBurst: 1000, TotalEvery: time.Millisecond}},
		storeHosts{st: f.st, now: func() time.Time { return f.now }, cfg: cfg}, rec, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, rec
}

func (f registerFixture) ticket(mac, addr string) string {
	hw, _ := net.ParseMAC(mac)
	return testNonceKey.RegistrationTicket(hw, netip.MustParseAddr(addr), f.now)
}

// form is the registration form served to mac at addr with notes.
func (f registerFixture) form(t *testing.T, mac, addr string, notes ...string) string {
	t.Helper()
	b, err := RenderRegisterForm(mac, "http://example.com", f.ticket(mac, addr), []string{"room-a", "room-b"}, notes)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (f registerFixture) wait(t *testing.T, mac, addr, name string) string {
	t.Helper()
	b, err := RenderRegisterWait(mac, "http://example.com", f.ticket(mac, addr), name, config.DefaultRegisterRetry)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// diskless is the boot script of host name, registered in room-a.
func diskless(t *testing.T, name, mac string) string {
	t.Helper()
	b, err := RenderScript(Host{Name: name, Profile: ProfileDiskless, RootImage: "contest/1"}, mac, "http://example.com", DefaultProfiles())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func registerURL(mac, ticket string, kv ...string) string {
	q := url.Values{"ticket": {ticket}}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return "http://example.com/boot/" + strings.ReplaceAll(mac, ":", "-") + "/register?" + q.Encode()
}

type registerStep struct {
	name, from, target string
	want               string
	wantEvent          string // detail of the last event, "" for none checked
}

func runSteps(t *testing.T, s *Server, rec *recorder, steps []registerStep) {
	t.Helper()
	for _, tc := range steps {
		t.Run(tc.name, func(t *testing.T) {
			resp := getFrom(s, tc.from+":40000", http.MethodGet, tc.target)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s status = %d, want 200", tc.target, resp.StatusCode)
			}
			if diff := cmp.Diff(tc.want, body(resp)); diff != "" {
				t.Errorf("GET %s from %s body mismatch (-want +got):\n%s", tc.target, tc.from, diff)
			}
			evs := rec.take()
			if tc.wantEvent == "" {
				return
			}
			if len(evs) == 0 || !strings.Contains(evs[len(evs)-1].Detail, tc.wantEvent) {
				t.Errorf("GET %s events = %+v, want the last to say %q", tc.target, evs, tc.wantEvent)
			}
		})
	}
}

func TestRegisterOpen(t *testing.T) {
	f := newRegisterFixture(t)
	s, rec := f.server(t, config.RegisterOpen)
	s.opts.Nonces = nil // the script itself is opened by token below
	hA, err := f.st.HostByMAC(context.Background(), macA)
	if err != nil {
		t.Fatal(err)
	}
	tkA := f.ticket(macA, "10.0.0.50")
	denied := func(msg string) string { return string(RenderDenied(msg)) }
	runSteps(t, s, rec, []registerStep{
		{"an enrolled machine gets the form", "10.0.0.50", "http://example.com/boot/" + macA + ".ipxe?token=" + hA.Token,
			f.form(t, macA, "10.0.0.50"), "registration form served"},
		{"its ticket from another address", "10.0.0.51", registerURL(macA, tkA, "name", "pc-09", "role", "room-a"),
			denied("no registration for " + macA + ": this form was handed out for another machine or address"), "ticket refused: nonce redeemed from another address"},
		{"its ticket for another machine", "10.0.0.51", registerURL(macB, tkA, "name", "pc-09", "role", "room-a"),
			denied("no registration for " + macB + ": this form was handed out for another machine or address"), "ticket refused: nonce not minted"},
		{"a ticket for an address that is not the machine's", "10.0.0.99", registerURL(macA, f.ticket(macA, "10.0.0.99"), "name", "pc-09", "role", "room-a"),
			denied("no registration for " + macA + " from 10.0.0.99: only the machine itself may register, from the address kiln leased it"), "not the MAC's lease"},
		{"no ticket", "10.0.0.50", registerURL(macA, "", "name", "pc-09", "role", "room-a"),
			denied("no registration for " + macA + ": this form was handed out for another machine or address"), "malformed"},
		{"a bad name", "10.0.0.50", registerURL(macA, tkA, "name", "pc_9", "role", "room-a"),
			f.form(t, macA, "10.0.0.50", `"pc_9" is not a valid host name (use 1-63 letters, digits and '-', not starting or ending with '-')`), "not a valid host name"},
		{"a taken name", "10.0.0.50", registerURL(macA, tkA, "name", "PC-01", "role", "room-a"),
			f.form(t, macA, "10.0.0.50", "pc-01 already exists"), "pc-01 already exists"},
		{"a role not offered", "10.0.0.50", registerURL(macA, tkA, "name", "pc-09", "role", "room-z"),
			f.form(t, macA, "10.0.0.50", `"room-z" is not a room/role of this site; choose one from the menu`), "registration form served"},
		{"an empty name", "10.0.0.50", registerURL(macA, tkA, "name", "", "role", "room-a"),
			f.form(t, macA, "10.0.0.50", "missing (type the machine's name, e.g. pc-07)"), "missing"},
		{"registered", "10.0.0.50", registerURL(macA, tkA, "name", "pc-09", "role", "room-a"),
			diskless(t, "pc-09", macA), "profile diskless"},
		{"the form again after registering: its boot script", "10.0.0.50", registerURL(macA, tkA, "name", "pc-10", "role", "room-a"),
			diskless(t, "pc-09", macA), "profile diskless"},
	})
	h, err := f.st.HostByMAC(context.Background(), macA)
	if err != nil || h.Name != "pc-09" || h.Role != "room-a" || h.BootProfile != store.BootDiskless || h.ID != hA.ID {
		t.Errorf("host of %s after registering = %+v, %v, want pc-09 (id %d), room-a, diskless", macA, h, err, hA.ID)
	}
	// A registered host's MAC never gets the form, even with a ticket.
	if b := body(getFrom(s, "10.0.0.50:40000", http.MethodGet, registerURL(macA, tkA))); b != diskless(t, "pc-09", macA) {
		t.Errorf("registered host's poll =\n%s\nwant its boot script", b)
	}
}

func TestRegisterApprove(t *testing.T) {
	ctx := context.Background()
	f := newRegisterFixture(t)
	s, rec := f.server(t, config.RegisterApprove)
	tkA, tkB := f.ticket(macA, "10.0.0.50"), f.ticket(macB, "10.0.0.51")
	runSteps(t, s, rec, []registerStep{
		{"asks", "10.0.0.51", registerURL(macB, tkB, "name", "pc-20", "role", "room-a"), f.wait(t, macB, "10.0.0.51", "pc-20"), "waits for approval"},
		{"polls", "10.0.0.51", registerURL(macB, tkB), f.wait(t, macB, "10.0.0.51", "pc-20"), ""},
		{"another machine asks for the waiting name", "10.0.0.50", registerURL(macA, tkA, "name", "pc-20", "role", "room-b"),
			f.form(t, macA, "10.0.0.50", "pc-20 is already asked for by another machine waiting for approval"), "already asked for"},
		{"a machine with nothing pending polls", "10.0.0.50", registerURL(macA, tkA), f.form(t, macA, "10.0.0.50"), "registration form served"},
	})
	if _, err := f.st.RejectRegistration(ctx, macB, "pc-20 is the proctor's"); err != nil {
		t.Fatal(err)
	}
	runSteps(t, s, rec, []registerStep{
		{"rejected", "10.0.0.51", registerURL(macB, tkB),
			f.form(t, macB, "10.0.0.51", "the registration as pc-20 was rejected by an operator: pc-20 is the proctor's"), "rejected"},
		{"asks again", "10.0.0.51", registerURL(macB, tkB, "name", "pc-21", "role", "room-a"), f.wait(t, macB, "10.0.0.51", "pc-21"), "waits for approval"},
	})
	if _, err := f.st.ApproveRegistration(ctx, macB); err != nil {
		t.Fatal(err)
	}
	runSteps(t, s, rec, []registerStep{
		{"approved: boots", "10.0.0.51", registerURL(macB, tkB), diskless(t, "pc-21", macB), "profile diskless"},
	})
	// The ticket expires; the machine is told to reboot.
	f.now = f.now.Add(time.Hour)
	s.opts.Now = func() time.Time { return f.now }
	if b := body(getFrom(s, "10.0.0.50:40000", http.MethodGet, registerURL(macA, tkA))); !strings.Contains(b, "this form has expired; reboot the machine") {
		t.Errorf("poll with an expired ticket =\n%s\nwant the expiry", b)
	}
}

func TestRegisterRateLimit(t *testing.T) {
	f := newRegisterFixture(t)
	s, _ := f.server(t, config.RegisterOpen)
	tkA := f.ticket(macA, "10.0.0.50")
	var last string
	for i := 0; i < 6; i++ {
		last = body(getFrom(s, "10.0.0.50:40000", http.MethodGet, registerURL(macA, tkA, "name", "bad_name", "role", "room-a")))
	}
	if !strings.Contains(last, "too many attempts from 10.0.0.50") {
		t.Errorf("sixth bad name in a second =\n%s\nwant the rate limit", last)
	}
	// Polls are not limited.
	if b := body(getFrom(s, "10.0.0.50:40000", http.MethodGet, registerURL(macA, tkA))); b != f.form(t, macA, "10.0.0.50") {
		t.Errorf("poll after the limit =\n%s\nwant the form", b)
	}
}

func TestRegisterOff(t *testing.T) {
	f := newRegisterFixture(t)
	root, _ := filesRoot(t)
	s, err := New(Options{FilesRoot: root, Now: func() time.Time { return f.now }}, storeHosts{st: f.st, now: func() time.Time { return f.now }}, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, _ := f.st.HostByMAC(context.Background(), macA)
	local, _ := RenderScript(Host{Name: h.Name, Profile: ProfileLocal}, macA, "http://example.com", DefaultProfiles())
	if b := body(getFrom(s, "10.0.0.50:40000", http.MethodGet, "http://example.com/boot/"+macA+".ipxe?token="+h.Token)); b != string(local) {
		t.Errorf("enrolled machine's script with registration off =\n%s\nwant its profile's (local)", b)
	}
	if b := body(getFrom(s, "10.0.0.50:40000", http.MethodGet, registerURL(macA, f.ticket(macA, "10.0.0.50"), "name", "pc-1"))); !strings.Contains(b, "does not register machines") {
		t.Errorf("registration with registration off =\n%s\nwant a refusal", b)
	}
	if _, err := f.st.HostByName(context.Background(), "pc-1"); err == nil {
		t.Error("registration off still registered pc-1")
	}
}
