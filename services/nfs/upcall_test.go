package nfs

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAnswer(t *testing.T) {
	p, err := MakePlan(hall)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	used := map[string]bool{}
	a := &Answerer{TTL: time.Minute, Now: func() time.Time { return now }, Used: func(host, export string) { used[host+" "+export] = true }}
	if !a.Set(p) {
		t.Fatal("Set(first plan) = false, want true")
	}
	if a.Set(p) {
		t.Error("Set(same plan) = true, want false: applying twice must change nothing")
	}
	const exp = "1800000060"
	// fsid 1261415361 = 0x4b2fabc1, sent by the kernel in host (little-endian) order.
	for _, tc := range []struct {
		name, cache, req, want string
	}{
		{"known host", cacheIP, "nfsd 10.0.0.11\n", "nfsd 10.0.0.11 " + exp + " pc-01\n"},
		{"known host, IPv6-mapped", cacheIP, "nfsd ::ffff:10.1.0.2\n", "nfsd ::ffff:10.1.0.2 " + exp + " admin\n"},
		{"outside the subnets", cacheIP, "nfsd 192.168.5.5\n", "nfsd 192.168.5.5 " + exp + "\n"},
		{"unknown address", cacheIP, "nfsd 10.0.0.77\n", "nfsd 10.0.0.77 " + exp + "\n"},
		{"host without exports", cacheIP, "nfsd 10.0.0.200\n", "nfsd 10.0.0.200 " + exp + "\n"},
		{"other class", cacheIP, "lockd 10.0.0.11\n", "lockd 10.0.0.11 " + exp + "\n"},
		{"pseudo-root", cacheExport, "pc-01 /data/nfs\n", "pc-01 /data/nfs " + exp + " 74757 65534 65534 0\n"},
		{"root image read-only", cacheExport, "pc-01 /data/nfs/roots/contest/2\n", "pc-01 /data/nfs/roots/contest/2 " + exp + " 9217 65534 65534 1261415361\n"},
		{"home read-write", cacheExport, "pc-01 /data/nfs/homes/contestants\n", "pc-01 /data/nfs/homes/contestants " + exp + " 9216 65534 65534 4058263123\n"},
		{"another host's home", cacheExport, "admin /data/nfs/homes/contestants\n", "admin /data/nfs/homes/contestants " + exp + "\n"},
		{"the version promoted before", cacheExport, "pc-01 /data/nfs/roots/contest/1\n", "pc-01 /data/nfs/roots/contest/1 " + exp + " 9217 65534 65534 1211082504\n"},
		{"another image", cacheExport, "pc-01 /data/nfs/roots/staff/7\n", "pc-01 /data/nfs/roots/staff/7 " + exp + "\n"},
		{"the data partition", cacheExport, "pc-01 /data\n", "pc-01 /data " + exp + "\n"},
		{"octal-escaped path", cacheExport, `pc-01 /data/nfs/a\040b` + "\n", `pc-01 /data/nfs/a\040b ` + exp + "\n"},
		{"fsid 0", cacheFH, `pc-01 1 \x00000000` + "\n", `pc-01 1 \x00000000 ` + exp + " /data/nfs\n"},
		{"fsid of the root", cacheFH, `pc-02 1 \xc1ab2f4b` + "\n", `pc-02 1 \xc1ab2f4b ` + exp + " /data/nfs/roots/contest/2\n"},
		{"fsid not allowed", cacheFH, `admin 1 \xc1ab2f4b` + "\n", `admin 1 \xc1ab2f4b ` + exp + "\n"},
		{"other fsid type", cacheFH, `pc-01 0 \x0000000000000001` + "\n", `pc-01 0 \x0000000000000001 ` + exp + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.Answer(tc.cache, tc.req)
			if err != nil {
				t.Fatalf("Answer(%s, %q) = %v", tc.cache, tc.req, err)
			}
			if got != tc.want {
				t.Errorf("Answer(%s, %q) = %q, want %q", tc.cache, tc.req, got, tc.want)
			}
		})
	}
	// Real exports granted are what is in use; pseudo directories and refusals are not.
	wantUsed := map[string]bool{"pc-01 /roots/contest/2": true, "pc-01 /homes/contestants": true, "pc-01 /roots/contest/1": true}
	if diff := cmp.Diff(wantUsed, used); diff != "" {
		t.Errorf("Used heard (-want +got):\n%s", diff)
	}
	for _, tc := range []struct{ cache, req string }{
		{cacheIP, "nfsd\n"}, {cacheExport, "pc-01\n"}, {cacheFH, "pc-01 1\n"}, {cacheFH, `pc-01 1 \xzz` + "\n"}, {"nfsd.other", "x y\n"},
	} {
		if got, err := a.Answer(tc.cache, tc.req); err == nil {
			t.Errorf("Answer(%s, %q) = %q, want an error", tc.cache, tc.req, got)
		}
	}
}

func FuzzAnswer(f *testing.F) {
	p, err := MakePlan(hall)
	if err != nil {
		f.Fatal(err)
	}
	a := &Answerer{}
	a.Set(p)
	f.Add(cacheFH, `pc-01 1 \x00000000`)
	f.Add(cacheExport, `pc-01 /data/nfs\040x`)
	f.Add(cacheIP, "nfsd 10.0.0.11")
	f.Fuzz(func(t *testing.T, cache, req string) {
		reply, err := a.Answer(cache, req)
		if err == nil && (reply == "" || reply[len(reply)-1] != '\n') {
			t.Errorf("Answer(%s, %q) = %q: a reply must be one line", cache, req, reply)
		}
	})
}

// TestSetPromoteKeepsCaches: promoting a version changes what hosts boot,
// not what the kernel is told (every version stays exported to the image's
// hosts), so the caches are not flushed, and the plan in force is the new one.
func TestSetPromoteKeepsCaches(t *testing.T) {
	in := hall
	before, err := MakePlan(in)
	if err != nil {
		t.Fatal(err)
	}
	in.Roots = []RootImage{{Name: "contest", Version: 1, Promoted: true}, {Name: "contest", Version: 2}, {Name: "staff", Version: 7, Promoted: true}, {Name: "new", Version: 1}}
	after, err := MakePlan(in)
	if err != nil {
		t.Fatal(err)
	}
	a := &Answerer{}
	a.Set(before)
	if a.Set(after) {
		t.Error("Set(plan after a promote) = true, want false: the kernel's answers are the same")
	}
	if got := a.Plan().Mounts["pc-01"].Root; got != "/roots/contest/1" {
		t.Errorf("after the promote, pc-01 boots %s, want /roots/contest/1", got)
	}
}
