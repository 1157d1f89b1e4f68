package report

import (
	"testing"
	"time"

	"kiln.dev/kiln/services/vetting/inventory"
	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/spec"
	"kiln.dev/kiln/services/vetting/verdict"
)

// The fixtures are built with the real spec, verdict and baseline code, so
// the report is tested on what the agent and orchestrator produce.

var t0 = time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

const gib = 1 << 30

func qemuInventory() inventory.Inventory {
	return inventory.Inventory{
		Kernel:        "6.1.0-56-amd64",
		SMBIOSVersion: "3.0.0",
		System:        inventory.System{Manufacturer: "QEMU", Product: "Standard PC (Q35 + ICH9, 2009)", Version: "pc-q35-7.2", UUID: "6f1c2b9e-5d3a-4e1b-9c41-0a1b2c3d4e5f"},
		Board:         inventory.Board{},
		BIOS:          inventory.BIOS{Vendor: "EDK II", Version: "unknown", Date: "02/06/2015"},
		CPU: inventory.CPU{Model: "Intel Core Processor (Skylake)", Vendor: "GenuineIntel", Sockets: 1, Cores: 2, Threads: 2,
			Packages: []inventory.Package{{ID: 0, Socket: "CPU 0", Model: "Intel Core Processor (Skylake)", Cores: 2, Threads: 2}}},
		Memory: inventory.Memory{UsableBytes: 2012345344, InstalledBytes: 2 * gib,
			DIMMs: []inventory.DIMM{{Locator: "DIMM 0", SizeBytes: 2 * gib, Type: "RAM", FormFactor: "DIMM", Manufacturer: "QEMU"}}},
		Disks: []inventory.Disk{{Name: "vda", Transport: "virtio", SizeBytes: 8 * gib, LogicalBlock: 512, PhysicalBlock: 512, Rotational: true}},
		NICs:  []inventory.NIC{{Name: "enp0s2", MAC: "52:54:00:12:34:56", Driver: "virtio_net", Carrier: true, Operstate: "up", MTU: 1500}},
		PCIe:  []inventory.PCIe{},
	}
}

func serverInventory() inventory.Inventory {
	dimm := func(loc, serial string) inventory.DIMM {
		return inventory.DIMM{Locator: loc, SizeBytes: 32 * gib, Type: "DDR4", FormFactor: "DIMM", SpeedMTs: 3200, ConfiguredMT: 3200,
			Manufacturer: "00CE00B300CE", Serial: serial, PartNumber: "M393A4K40EB3-CWE", ECC: true}
	}
	nvmeSMART := &inventory.SMART{Health: "PASSED", Counters: map[string]int64{"media_errors": 0, "percentage_used": 3, "available_spare": 100, "temperature_c": 34}}
	return inventory.Inventory{
		Kernel:        "6.1.0-56-amd64",
		SMBIOSVersion: "3.3.0",
		System:        inventory.System{Manufacturer: "Dell Inc.", Product: "PowerEdge R650", Serial: "7XQ9K53", SKU: "SKU=0A1B;ModelName=PowerEdge R650", Family: "PowerEdge"},
		Board:         inventory.Board{Manufacturer: "Dell Inc.", Product: "0Y2K8N", Version: "A03", Serial: ".7XQ9K53.CNFCP0022B00KL."},
		BIOS:          inventory.BIOS{Vendor: "Dell Inc.", Version: "1.9.2", Date: "11/03/2022"},
		CPU: inventory.CPU{Model: "Intel(R) Xeon(R) Silver 4309Y CPU @ 2.80GHz", Vendor: "GenuineIntel", Sockets: 2, Cores: 16, Threads: 32, MaxMHz: 3600,
			Packages: []inventory.Package{{ID: 0, Socket: "CPU1", Cores: 8, Threads: 16}, {ID: 1, Socket: "CPU2", Cores: 8, Threads: 16}}},
		Memory: inventory.Memory{UsableBytes: 269842878464, InstalledBytes: 256 * gib, DIMMs: []inventory.DIMM{
			dimm("A1", "0A5F21C7"), {Locator: "A2"}, dimm("A3", "0C5F21C7"), {Locator: "A4"},
			dimm("A5", "0E5F21C7"), dimm("A7", "0G5F21C7"), dimm("B1", "1A5F21C7"), dimm("B3", "1C5F21C7"), dimm("B5", "1E5F21C7"), dimm("B7", "1G5F21C7"),
		}},
		Disks: []inventory.Disk{
			{Name: "nvme0n1", Transport: "nvme", Model: "Dell Ent NVMe v2 AGN MU U.2 1.6TB", Serial: "S6CMNE0T600123", Firmware: "2.1.0",
				SizeBytes: 1600321314816, LogicalBlock: 512, PhysicalBlock: 512, Controller: "nvme0", SMART: nvmeSMART},
			{Name: "sda", Transport: "ata", Model: "MZ7KH480HAHQ0D3", Serial: "S47MNA0N812345", Firmware: "HG58",
				SizeBytes: 480103981056, LogicalBlock: 512, PhysicalBlock: 4096, SMART: &inventory.SMART{Health: "FAILED", Counters: map[string]int64{"reallocated_sectors": 2048, "pending_sectors": 16}}},
		},
		NICs: []inventory.NIC{
			{Name: "eno12399np0", MAC: "b0:7b:25:de:1a:10", Driver: "ice", Carrier: true, SpeedMbps: 25000, Operstate: "up"},
			{Name: "eno12409np1", MAC: "b0:7b:25:de:1a:11", Driver: "ice", Carrier: false, Operstate: "down"},
		},
		PCIe: []inventory.PCIe{
			{Address: "0000:31:00.0", Class: "ethernet", Vendor: "8086", Device: "159b", Driver: "ice", SpeedGTs: 16, MaxSpeedGTs: 16, Width: 8, MaxWidth: 8},
			{Address: "0000:b1:00.0", Class: "nvme", Vendor: "144d", Device: "a824", Driver: "nvme", SpeedGTs: 8, MaxSpeedGTs: 16, Width: 4, MaxWidth: 4, Degraded: true},
		},
		Warnings: []string{"ATA identify of sdb: permission denied"},
	}
}

func diff(t testing.TB, yaml string, inv inventory.Inventory) []spec.Result {
	t.Helper()
	s, err := spec.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("spec.Parse: %v", err)
	}
	return spec.Diff(s, inv.Facts())
}

func judged(name string, from, to float64, ms []verdict.Measurement, toolErr error) verdict.StageResult {
	st, why := verdict.Stage(ms, toolErr, false)
	r := verdict.StageResult{Stage: name, Status: st, Started: at(from), Ended: at(to), Measurements: ms, Summary: why}
	if toolErr != nil {
		r.Error = toolErr.Error()
	}
	return r
}

func cpuMeasurements(units float64, cpus int) []verdict.Measurement {
	return []verdict.Measurement{
		verdict.Measure("cpu.compute_errors", 0, "", verdict.Must(verdict.OpEQ, 0, "every result matches the reference computation")),
		verdict.Measure("cpu.cores_exercised", float64(cpus), "", verdict.Must(verdict.OpGE, float64(cpus), "all CPUs ran the workload")),
		verdict.Evaluate(verdict.Measurement{Name: "cpu.units_per_second", Value: units, Unit: "units/s", Better: verdict.Higher}),
		verdict.Evaluate(verdict.Measurement{Name: "cpu.slowest_cpu_ratio", Value: 0.9731}),
		verdict.Skip("cpu.throttle_events", "no thermal_throttle counters in sysfs (virtual machine or a CPU without them)"),
		verdict.Skip("cpu.machine_checks", "no MCE row in /proc/interrupts (machine checks not reported by this kernel)"),
	}
}

// events returns the stage events of stage results, with Seq numbers.
func events(results []verdict.StageResult, timeouts map[string]time.Duration) []protocol.Event {
	var evs []protocol.Event
	for _, r := range results {
		evs = append(evs,
			protocol.Event{Kind: protocol.EventStageStart, Stage: r.Stage, Time: r.Started, Timeout: timeouts[r.Stage]},
			protocol.Event{Kind: protocol.EventStageProgress, Stage: r.Stage, Time: r.Started.Add(r.Duration() / 2), Fraction: 0.5},
			protocol.Event{Kind: protocol.EventStageEnd, Stage: r.Stage, Time: r.Ended, Result: &r})
	}
	for i := range evs {
		evs[i].Seq = int64(i + 1)
	}
	return evs
}

// failedHeldRun is the QEMU target failing its memory spec, with a baseline
// that marks storage slow, held for SSH.
func failedHeldRun(t testing.TB) Run {
	inv := qemuInventory()
	d := diff(t, `
expect:
  - fact: memory.installed_bytes
    min: 64GiB
  - fact: cpu.threads
    min: 2
  - fact: disks.count
    exact: 1
  - fact: nics.with_carrier
    min: 2
    severity: degraded
  - fact: bios.vendor
    exact: Dell Inc.
    severity: info
    note: firmware inventory only
`, inv)
	results := []verdict.StageResult{
		judged("cpu", 12, 22.4, cpuMeasurements(18234.77, 2), nil),
		judged("memory", 22.5, 61, []verdict.Measurement{
			verdict.Skip("memory.edac_corrected", "no EDAC memory controller in sysfs (no ECC, or its driver is not loaded)"),
			verdict.Skip("memory.edac_uncorrected", "no EDAC memory controller in sysfs (no ECC, or its driver is not loaded)"),
			verdict.Measure("memory.miscompares", 0, "words", verdict.Must(verdict.OpEQ, 0, "every word reads back as written")),
			verdict.Evaluate(verdict.Measurement{Name: "memory.tested_bytes", Value: 905969664, Unit: "bytes"}),
			verdict.Evaluate(verdict.Measurement{Name: "memory.bandwidth_mbps", Value: 3911.4, Unit: "MB/s", Better: verdict.Higher}),
		}, nil),
		judged("storage", 61.2, 77, []verdict.Measurement{
			verdict.Evaluate(verdict.Measurement{Name: "storage.vda.seq_read_mbps", Value: 212.5, Unit: "MB/s", Better: verdict.Higher}),
			verdict.Measure("storage.vda.read_errors", 0, "", verdict.Must(verdict.OpEQ, 0, "every block reads without a media error")),
			verdict.Evaluate(verdict.Measurement{Name: "storage.vda.rand_read_iops", Value: 14210, Unit: "IOPS", Better: verdict.Higher}),
			verdict.Evaluate(verdict.Measurement{Name: "storage.vda.read_latency_p99_us", Value: 1873.25, Unit: "µs", Better: verdict.Lower}),
			verdict.Skip("storage.vda.health", "the disk offers no SMART data (virtio, USB or a RAID volume)"),
		}, nil),
		judged("network", 77.1, 84, []verdict.Measurement{
			verdict.Measure("network.enp0s2.carrier", 1, "", verdict.Must(verdict.OpEQ, 1, "the NIC has a link")),
			verdict.Evaluate(verdict.Measurement{Name: "network.enp0s2.link_mbps", Value: 0, Unit: "Mb/s", Detail: "the driver reports no link speed"}),
			verdict.Evaluate(verdict.Measurement{Name: "network.enp0s2.rx_mbps", Value: 941.3, Unit: "Mb/s", Better: verdict.Higher}),
			verdict.Evaluate(verdict.Measurement{Name: "network.enp0s2.tx_mbps", Value: 902.8, Unit: "Mb/s", Better: verdict.Higher}),
		}, nil),
	}
	base := verdict.NewBaseline("QEMU Standard PC (Q35 + ICH9, 2009)", [][]verdict.Measurement{
		{{Name: "storage.vda.seq_read_mbps", Value: 480, Better: verdict.Higher, Status: verdict.Pass}, {Name: "cpu.units_per_second", Value: 18000, Better: verdict.Higher, Status: verdict.Pass}},
		{{Name: "storage.vda.seq_read_mbps", Value: 510, Better: verdict.Higher, Status: verdict.Pass}, {Name: "cpu.units_per_second", Value: 18500, Better: verdict.Higher, Status: verdict.Pass}},
		{{Name: "storage.vda.seq_read_mbps", Value: 495, Better: verdict.Higher, Status: verdict.Pass}, {Name: "cpu.units_per_second", Value: 17900, Better: verdict.Higher, Status: verdict.Pass}},
	})
	results = verdict.ApplyBaselineToStages(results, base, verdict.Policy{})
	v, findings := verdict.Run(d, results)
	evs := events(results, map[string]time.Duration{"cpu": 40 * time.Second, "memory": 5 * time.Minute, "storage": 50 * time.Second, "network": 30 * time.Second})
	evs = append(evs,
		protocol.Event{Seq: int64(len(evs) + 1), Kind: protocol.EventNote, Time: at(84.5), Note: "verdict FAIL; holding for SSH"},
		protocol.Event{Seq: int64(len(evs) + 2), Kind: protocol.EventHolding, Time: at(86), Addr: "10.9.0.50:22", HostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk2cXJ0dGVzdGtleWZvcmtpbG5yZXBvcnQ"},
		protocol.Event{Seq: int64(len(evs) + 3), Kind: protocol.EventHolding, Time: at(101), Addr: "10.9.0.50:22", HostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk2cXJ0dGVzdGtleWZvcmtpbG5yZXBvcnQ"},
	)
	return Run{
		ID: "42", Host: "qemu-target", MACs: []string{"52:54:00:12:34:56"}, State: "holding", Profile: "quick", Hold: true,
		Created: at(-40), Started: at(0), Ended: at(85), Verdict: v, HoldAddr: "10.9.0.50:22",
		Report: &protocol.Report{RunID: "42", AgentVersion: "kiln-agent 0.7.0", Profile: "quick", Started: at(8), Ended: at(84.2),
			Inventory: inv, Diff: d, Stages: results, Verdict: v, Findings: findings, Baseline: &base},
		Events: evs,
		History: []HistoryItem{
			{ID: "17", State: "passed", Verdict: verdict.Pass, Ended: time.Date(2026, 2, 2, 14, 3, 0, 0, time.UTC), URL: "/vetting/runs/17/report.html"},
			{ID: "30", State: "stopped", Ended: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)},
			{ID: "25", State: "failed", Verdict: verdict.Fail, Ended: time.Date(2026, 2, 20, 10, 30, 0, 0, time.UTC)},
			{ID: "42", State: "holding"}, // this run itself: left out
		},
	}
}

// stoppedRun never got its report: the inventory arrived, cpu finished,
// memory was running when the operator stopped the run.
func stoppedRun(t testing.TB) Run {
	inv := serverInventory()
	d := diff(t, `
expect:
  - fact: memory.installed_bytes
    min: 256GiB
  - fact: disks.smart_health
    in: [PASSED]
  - fact: pcie.degraded_links
    max: 0
    severity: degraded
  - fact: cpu.model
    min: 3
`, inv)
	cpu := judged("cpu", 30, 150, cpuMeasurements(402118.5, 32), nil)
	evs := events([]verdict.StageResult{cpu}, map[string]time.Duration{"cpu": 3 * time.Minute})
	evs = append(evs,
		protocol.Event{Kind: protocol.EventNote, Time: at(29), Note: "SMART of sda: FAILED before the stages started"},
		protocol.Event{Kind: protocol.EventStageStart, Stage: "memory", Time: at(150.5), Timeout: 20 * time.Minute},
		protocol.Event{Kind: protocol.EventStageProgress, Stage: "memory", Time: at(300), Fraction: 0.3, Note: "pattern 2 of 4"},
	)
	for i := range evs {
		evs[i].Seq = int64(i + 1)
	}
	return Run{
		ID: "43", Host: "r650-04", MACs: []string{"b0:7b:25:de:1a:10", "b0:7b:25:de:1a:11"}, State: "stopped", Profile: "standard", Wipe: true,
		Created: at(-120), Started: at(0), Ended: at(420), Error: "stopped by admin@example.com",
		Inventory: &protocol.Inventory{Inventory: inv, Diff: d},
		Events:    evs,
	}
}

// passedRun has no baseline and no history: the first run of a host.
func passedRun(t testing.TB) Run {
	inv := serverInventory()
	inv.Disks = inv.Disks[:1]
	inv.PCIe[1].Degraded, inv.PCIe[1].SpeedGTs = false, 16
	d := diff(t, `
expect:
  - fact: memory.installed_bytes
    min: 256GiB
  - fact: cpu.sockets
    exact: 2
`, inv)
	results := []verdict.StageResult{
		judged("cpu", 20, 140, cpuMeasurements(402118.5, 32), nil),
		judged("memory", 140, 1900, []verdict.Measurement{
			verdict.Measure("memory.edac_corrected", 0, "", verdict.Should(verdict.OpEQ, 0, "no corrected ECC errors")),
			verdict.Measure("memory.edac_uncorrected", 0, "", verdict.Must(verdict.OpEQ, 0, "no uncorrected ECC errors")),
			verdict.Measure("memory.miscompares", 0, "words", verdict.Must(verdict.OpEQ, 0, "every word reads back as written")),
			verdict.Evaluate(verdict.Measurement{Name: "memory.tested_bytes", Value: 242858590617, Unit: "bytes"}),
			verdict.Evaluate(verdict.Measurement{Name: "memory.bandwidth_mbps", Value: 48211.9, Unit: "MB/s", Better: verdict.Higher}),
		}, nil),
	}
	v, findings := verdict.Run(d, results)
	return Run{
		ID: "44", Host: "r650-05", MACs: []string{"b0:7b:25:de:1b:10"}, State: "passed", Profile: "standard",
		Created: at(-30), Started: at(0), Ended: at(1905), Verdict: v,
		Report: &protocol.Report{RunID: "44", AgentVersion: "kiln-agent 0.7.0", Profile: "standard", Started: at(10), Ended: at(1901),
			Inventory: inv, Diff: d, Stages: results, Verdict: v, Findings: findings},
		Events:    events(results, map[string]time.Duration{"cpu": 3 * time.Minute, "memory": time.Hour}),
		Generated: at(2000),
	}
}
