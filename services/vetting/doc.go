// Package vetting is kiln's hardware vetting: a live image boots the machine
// under test over the network, an agent inventories it, diffs the inventory
// against the host's expected spec, runs burn-in stages and reports
// measurements with validators, from which a verdict follows. This package
// holds no code; it documents how the parts below fit, for the orchestrator,
// UI and live-image builders.
//
// # Packages
//
//   - inventory: the machine's hardware from sysfs, procfs, the raw SMBIOS
//     table (inventory/smbios) and NVMe / ATA identify and SMART (ioctls; no
//     udev). Collect(ctx, Config{Root, NVMe, ATA}) → Inventory;
//     Inventory.Facts() flattens it into named values (inventory.FactNames).
//   - spec: the expected-spec YAML (Parse) and Diff(spec, facts) → []Result,
//     each item expected vs actual with a severity and a status.
//   - verdict: Measurement + Validator → PASS / FAIL / DEGRADED / SKIPPED /
//     ERROR / TIMEOUT; Stage judges a stage, Run a whole run (spec diff +
//     stages) with its Findings; Baseline / ApplyBaseline judge performance
//     against earlier runs of the same model.
//   - stages: CPU, Memory, Storage, Network; Profile (quick, standard,
//     extended) and Plan; Runner runs planned stages with timeouts and emits
//     events.
//   - protocol: agent ↔ orchestrator HTTP + JSON with per-run bearer tokens:
//     NewHandler(Options{Tokens, Backend}) on the server, Client in the agent.
//   - agent: the agent's main loop, agent.Run(ctx, Options{ServerURL, Token,
//     Root, Profile, …}); cmd/kiln-agent is the binary for the live image.
//
// # A run, end to end
//
//  1. The orchestrator creates a run, issues a token (protocol.NewToken;
//     store protocol.HashToken of it, never the token) that expires with the
//     run, and renders the host's iPXE script with kiln.server=<appliance
//     URL> kiln.token=<token> kiln.host=<name> kiln.mac=<mac> on the kernel
//     command line (services/httpboot's vet template already does; add
//     kiln.profile=… to force a profile).
//  2. The live image starts kiln-agent, which reads those from /proc/cmdline
//     (agent.ParseCmdline), collects the inventory and POSTs Hello to
//     /vet/v1/hello. The server resolves the token with its TokenChecker and
//     calls Backend.Hello(runID, hello), which returns the Assignment:
//     profile name (or full Settings), Wipeable, the expected spec YAML, an
//     optional Baseline, HoldOnFailure, Deadline.
//  3. The agent sends protocol.Inventory (inventory + spec diff), then runs
//     the stages, streaming protocol.Events (stage_start with its timeout,
//     stage_progress, stage_end with the StageResult and its measurements,
//     note) in batches; Seq numbers start at 1 per run without gaps, so the
//     orchestrator can drop duplicates of a retried batch and serve SSE with
//     resume (Last-Event-ID = Seq).
//  4. The agent judges the run (verdict.Run) and sends protocol.Report:
//     verdict, findings (each naming what failed, e.g. "memory.installed_bytes:
//     expected ≥ 64 GiB, got 2 GiB"), stages, inventory, diff.
//  5. If the verdict is FAIL and HoldOnFailure is set with a HoldKey,
//     agent.Options.Hold is called: in the live image sshhold.Hold serves
//     SSH on :22 (an ephemeral ed25519 host key, root with the run's key
//     only, exec/shell/pty), announces it (EventHolding with Addr and
//     HostKey, repeated every HoldHeartbeat) and returns when the
//     orchestrator answers 410. kiln-agent prints "kiln-agent: run <id>
//     verdict <STATUS>" and then, as PID 1 of the live image, does
//     Assignment.After (see cmd/kiln-agent/live.go and docs/image.md).
//
// The orchestrator stops a run by answering the agent with
// protocol.ErrRunOver from its Backend (HTTP 410): the agent cancels its
// stages and exits without a report. A wrong, expired or revoked token is
// 401, a token of another run than the path's is 403; the agent stops at
// either.
//
// # Verdicts
//
// Tool errors are kept apart from hardware failures: a stage that cannot
// measure (a disk that will not open, memory that cannot be mapped, an
// appliance that cannot be reached through a NIC) is ERROR; only a violated
// validator (miscompares, media errors, grown SMART defects, machine checks,
// a link below the spec) is FAIL. A spec item that cannot be evaluated (min
// on a string) is ERROR too: the spec's author, not the machine, is wrong.
// Combined, FAIL > TIMEOUT > ERROR > DEGRADED > PASS > SKIPPED.
//
// Measurements that say which way is better (verdict.Higher / Lower:
// cpu.units_per_second, memory.bandwidth_mbps, storage.<disk>.seq_read_mbps,
// rand_read_iops, read_latency_p50_us/p99_us, write_mbps,
// network.<nic>.rx_mbps/tx_mbps) feed baselines: the orchestrator builds
// verdict.NewBaseline(model, measurements of earlier passed runs of the same
// model — e.g. the same system.manufacturer + system.product) and sends it
// in the Assignment; once a measurement has three earlier values, a
// shortfall beyond 20 % of the mean (or three standard deviations) is
// DEGRADED. verdict.ApplyBaselineToStages re-judges a stored report the same
// way on the server.
//
// # Stages and profiles
//
//   - cpu: one pinned worker per CPU in the affinity mask runs SHA-256 and
//     floating-point matrix work whose results are compared with a reference
//     computed beforehand (cpu.compute_errors must be 0,
//     cpu.cores_exercised must equal the CPU count); thermal throttle
//     counters (sysfs) and the MCE row of /proc/interrupts are compared
//     before and after.
//   - memory: patterns (random, address, checkerboard, inverse) written over
//     a fraction of MemAvailable and read back (memory.miscompares must be
//     0), always leaving at least 256 MiB (stages.MinHeadroom); EDAC
//     corrected (DEGRADED) and uncorrected (FAIL) counts before and after.
//   - storage: per fixed disk, read-only with O_DIRECT: sequential
//     throughput, random 4 KiB IOPS and latency percentiles at queue depth 8,
//     media errors; only when the Assignment says Wipeable, a pattern is
//     written over the start of the disk and verified. SMART health and
//     defect counters (reallocated, pending, uncorrectable, media errors)
//     before and after.
//   - network: per NIC with carrier: carrier, link speed against the spec's
//     nics.speed_mbps / nic.<name>.speed_mbps minimum, download and upload
//     throughput to the appliance's /vet/v1/runs/<run>/throughput bound to
//     that NIC (SO_BINDTODEVICE).
//
// Profiles (stages.ProfileByName): quick (CPU 10 s, half of free memory
// once, 5 s per storage phase, 3 s per network direction), standard (2 min,
// 90 %, 30 s, 10 s), extended (30 min, 90 % four times, 2 min, 60 s). Each
// stage has a timeout (derived from its durations and the number of disks
// and NICs, memory's set per profile); a stage past it is TIMEOUT with the
// measurements it hands back within a 5 s grace.
//
// # Expected spec
//
// See package spec for the YAML and inventory.FactNames for the facts. A
// spec a test VM fails on purpose (QEMU target with 2 GiB):
//
//	expect:
//	  - fact: memory.installed_bytes
//	    min: 64GiB
//
// reports "memory.installed_bytes: expected ≥ 64 GiB, got 2 GiB".
//
// # Reports and notifications
//
// These two packages run on the appliance only (the agent never imports
// them).
//
//   - report: report.Run is plain data the orchestrator fills from its
//     database — run metadata and state, the agent's protocol.Report (nil
//     when it never arrived: the protocol.Inventory and the stage events
//     then stand in), the events, and the host's earlier runs.
//     report.JSON renders the versioned report.Document (schema
//     "kiln.vetting.report", SchemaVersion) for tooling: verdict, findings,
//     spec diff with outcomes, stages with measurements, validators and
//     baseline deltas, inventory summary, hold address, history.
//     report.HTML renders one self-contained page — inline CSS and SVG
//     (stage timeline, per-stage measurements against their limits and
//     baseline mean, the host's verdict history), no scripts, readable on a
//     phone and in print; serve it with report.ContentSecurityPolicy.
//     report.Summarize gives the headline and finding lines a notification
//     carries.
//   - notify: targets (webhook, ntfy, SMTP) as configured under
//     vetting.notify (notify.Validate names the bad field and the fix);
//     notify.Send makes one bounded attempt for a notify.Message and
//     returns an *notify.Error saying whether it is permanent and what
//     Retry-After the server asked for; notify.Delay(attempt, err) spaces
//     retries (10 s doubling to 30 min, notify.MaxAttempts) for the
//     orchestrator's durable outbox. Target.Wants filters by outcome (pass,
//     fail, …, held, stopped, timed_out).
//
// # Tests
//
// Tier 1: SMBIOS, NVMe/ATA identify and SMART parsers (fuzzed: SMBIOS and
// the spec YAML), the spec diff, validators, verdicts and baselines, and
// inventory golden files from captured trees in inventory/testdata (a
// machine captured with go test -run TestCapture -capture, plus generated
// trees of a rack server and of the QEMU target: -update-fixtures). Tier 2:
// every stage runs for real on the test machine with tiny sizes; the
// protocol and the agent run over loopback HTTP.
package vetting
