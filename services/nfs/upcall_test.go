package nfs

import (
	"testing"
	"time"
)

func TestAnswer(t *testing.T) {
	p, err := MakePlan(hall)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	a := &Answerer{TTL: time.Minute, Now: func() time.Time { return now }}
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
		{"a pinned version for others", cacheExport, "pc-01 /data/nfs/roots/contest/1\n", "pc-01 /data/nfs/roots/contest/1 " + exp + "\n"},
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
