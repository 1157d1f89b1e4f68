package iscsi

// BenchmarkISCSI (make bench, through guest.EnterB): fio from the
// initiator against a LUN over iSCSI (TCP over a veth pair, CHAP, buffered
// fileio on a tmpfs file) and against the same file locally; reports MB/s
// and IOPS of both and their ratio. Under TCG the absolute figures measure
// the emulator; the ratio is the protocol's cost on one machine.

import (
	"encoding/json"
	"net/netip"
	"os/exec"
	"path/filepath"
	"testing"

	"kiln.dev/kiln/qemu/guest"
)

func BenchmarkISCSI(b *testing.B) {
	if !guest.EnterB(b, guest.Options{Modules: []string{"target_core_file", "iscsi_target_mod", "iscsi_tcp", "veth"}, MemoryMiB: 1536}) {
		return
	}
	for _, tool := range []string{"fio", "iscsid", "iscsiadm", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s is not installed (apt-get install fio open-iscsi iproute2)", tool)
		}
	}
	setupNetns(b)
	file := filepath.Join(b.TempDir(), "node1.bench.img")
	if err := sparse(file, 256<<20); err != nil {
		b.Fatal(err)
	}
	ini := Initiator{Host: "node1", IQN: hall.Initiator("node1"), CHAP: CHAP{UserID: "node1", Password: "bench-secret-0123"}}
	want, err := Desired(Inputs{Names: hall, Portals: []netip.AddrPort{mustAddrPort(portalAddr + ":3260")},
		Initiators: []Initiator{ini}, Volumes: []Volume{{Host: "node1", Name: "bench", File: file, Size: 256 << 20}}})
	if err != nil {
		b.Fatal(err)
	}
	cfs := Configfs{Root: DefaultRoot, Prefix: hall.Prefix}
	if err := cfs.Prepare(); err != nil {
		b.Fatal(err)
	}
	if err := inNetns(netnsTarget, func() error { return apply(cfs, want) }); err != nil {
		b.Fatal(err)
	}
	defer apply(cfs, State{})
	target, portal := hall.Target("node1"), portalAddr+":3260"
	for _, args := range [][]string{
		{"sh", "-c", "mkdir -p /etc/iscsi && echo InitiatorName=" + ini.IQN + " > /etc/iscsi/initiatorname.iscsi"},
		{"iscsid"},
		{"iscsiadm", "-m", "discovery", "-t", "st", "-p", portal},
		{"iscsiadm", "-m", "node", "-T", target, "-p", portal, "-o", "update", "-n", "node.session.auth.authmethod", "-v", "CHAP",
			"-n", "node.session.auth.username", "-v", "node1", "-n", "node.session.auth.password", "-v", ini.CHAP.Password},
		{"iscsiadm", "-m", "node", "-T", target, "-p", portal, "--login"},
	} {
		if out, err := run(args...); err != nil {
			b.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	defer run("iscsiadm", "-m", "node", "--logoutall=all")
	disk := diskWithSerial(b, Serial("node1", "bench"))

	jobs := []struct{ name, rw, bs string }{{"seq-read", "read", "1M"}, {"seq-write", "write", "1M"}, {"rand-read-4k", "randread", "4k"}, {"rand-write-4k", "randwrite", "4k"}}
	for b.Loop() {
		for _, j := range jobs {
			remote := fioRun(b, disk, j.rw, j.bs, true)
			local := fioRun(b, file, j.rw, j.bs, false)
			if j.bs == "1M" {
				b.ReportMetric(remote.bw/1e6, j.name+"-iscsi-MB/s")
				b.ReportMetric(local.bw/1e6, j.name+"-local-MB/s")
			} else {
				b.ReportMetric(remote.iops, j.name+"-iscsi-IOPS")
				b.ReportMetric(local.iops, j.name+"-local-IOPS")
			}
			b.ReportMetric(remote.bw/local.bw, j.name+"-ratio")
		}
	}
}

type fioResult struct{ bw, iops float64 }

// fioRun runs one 3 s fio job on path (O_DIRECT for the iSCSI disk; the
// local file is on tmpfs, which has no O_DIRECT).
func fioRun(b *testing.B, path, rw, bs string, direct bool) fioResult {
	b.Helper()
	d := "0"
	if direct {
		d = "1"
	}
	out, err := exec.Command("fio", "--name=kiln", "--filename="+path, "--rw="+rw, "--bs="+bs, "--size=128M",
		"--direct="+d, "--ioengine=psync", "--runtime=3", "--time_based", "--output-format=json").Output()
	if err != nil {
		b.Fatalf("fio %s %s on %s: %v\n%s", rw, bs, path, err, out)
	}
	var r struct {
		Jobs []struct {
			Read, Write struct {
				BW   float64 `json:"bw_bytes"`
				IOPS float64 `json:"iops"`
			}
		}
	}
	if err := json.Unmarshal(out, &r); err != nil || len(r.Jobs) != 1 {
		b.Fatalf("fio's JSON: %v\n%s", err, out)
	}
	s := r.Jobs[0].Read
	if rw == "write" || rw == "randwrite" {
		s = r.Jobs[0].Write
	}
	return fioResult{bw: s.BW, iops: s.IOPS}
}
