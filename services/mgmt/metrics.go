package mgmt

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/init/supervisor/supervisorapi"
	"kiln.dev/kiln/ota/slots"
	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/metrics"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/svc"
)

// serviceStatus is the supervisor's status (*supervisorapi.Client).
type serviceStatus interface {
	Status(ctx context.Context) (supervisorapi.Status, error)
}

// slotStatus is the OTA slots' status (*slots.Controller).
type slotStatus interface {
	Status(ctx context.Context) (slots.Status, error)
}

// vetCounter counts vetting runs (*store.Store).
type vetCounter interface {
	CountVetRuns(ctx context.Context) ([]store.VetRunCount, error)
}

// applianceMetrics are what mgmt knows beyond its own requests.
type applianceMetrics struct {
	Version    string
	Supervisor serviceStatus
	Slots      slotStatus // nil: no OTA on this system
	Vetting    vetCounter
	DataDir    string // the state directory, on the data partition
}

// serviceStates and slotStates are enumerated, so every state has a series
// (0 or 1) and an alert can ask for one that is not there.
var (
	serviceStates = []supervisorapi.State{supervisorapi.StateStopped, supervisorapi.StateStarting, supervisorapi.StateReady,
		supervisorapi.StateBackoff, supervisorapi.StateCrashLoop, supervisorapi.StateStopping}
	slotStates = []slots.State{slots.StateEmpty, slots.StateIncomplete, slots.StateInstalled, slots.StateTrying,
		slots.StateGood, slots.StateBad}
)

// register adds the appliance families to reg.
func (a applianceMetrics) register(reg *metrics.Registry) {
	reg.GaugeVec("kiln_build_info", "kiln's version and the Go release it was built with (always 1).", "version", "goversion").
		With(a.Version, runtime.Version()).Set(1)

	sup := &cached[supervisorapi.Status]{fetch: a.Supervisor.Status}
	reg.CollectFunc("kiln_supervisor_ready", "1 while every enabled service is ready.", metrics.KindGauge, nil,
		from(sup, func(st supervisorapi.Status) []metrics.Sample { return []metrics.Sample{{Value: b2f(st.Ready)}} }))
	reg.CollectFunc("kiln_service_restarts_total", "Starts of a service after its first since the supervisor started.", metrics.KindCounter, []string{"service"},
		from(sup, func(st supervisorapi.Status) (out []metrics.Sample) {
			for _, s := range st.Services {
				out = append(out, metrics.Sample{LabelValues: []string{s.Name}, Value: float64(s.Restarts)})
			}
			return out
		}))
	reg.CollectFunc("kiln_service_state", "1 for the state each service is in (stopped, starting, ready, backoff, crash-loop, stopping), 0 for the others.", metrics.KindGauge, []string{"service", "state"},
		from(sup, func(st supervisorapi.Status) (out []metrics.Sample) {
			for _, s := range st.Services {
				for _, state := range serviceStates {
					out = append(out, metrics.Sample{LabelValues: []string{s.Name, string(state)}, Value: b2f(s.State == state)})
				}
			}
			return out
		}))

	data := func(pick func(unix.Statfs_t) float64) func(context.Context) ([]metrics.Sample, error) {
		return func(context.Context) ([]metrics.Sample, error) {
			var fs unix.Statfs_t
			if err := unix.Statfs(a.DataDir, &fs); err != nil {
				return nil, fmt.Errorf("statfs %s: %w", a.DataDir, err)
			}
			return []metrics.Sample{{Value: pick(fs)}}, nil
		}
	}
	reg.CollectFunc("kiln_data_size_bytes", "Size of the file system holding kiln's state (the data partition).", metrics.KindGauge, nil,
		data(func(fs unix.Statfs_t) float64 { return float64(fs.Blocks) * float64(fs.Bsize) }))
	reg.CollectFunc("kiln_data_avail_bytes", "Bytes of the data file system still available.", metrics.KindGauge, nil,
		data(func(fs unix.Statfs_t) float64 { return float64(fs.Bavail) * float64(fs.Bsize) }))
	reg.CollectFunc("kiln_data_files", "Inodes of the data file system.", metrics.KindGauge, nil,
		data(func(fs unix.Statfs_t) float64 { return float64(fs.Files) }))
	reg.CollectFunc("kiln_data_files_free", "Free inodes of the data file system.", metrics.KindGauge, nil,
		data(func(fs unix.Statfs_t) float64 { return float64(fs.Ffree) }))

	a.registerOTA(reg)

	reg.CollectFunc("kiln_vetting_runs", "Vetting runs in the database by state and verdict (retention removes old runs).", metrics.KindGauge, []string{"state", "verdict"},
		func(ctx context.Context) ([]metrics.Sample, error) {
			cs, err := a.Vetting.CountVetRuns(ctx)
			if err != nil {
				return nil, err
			}
			var out []metrics.Sample
			for _, c := range cs {
				out = append(out, metrics.Sample{LabelValues: []string{c.State, c.Verdict}, Value: float64(c.Runs)})
			}
			return out, nil
		})
}

// registerOTA adds the slot families: which slot runs, each slot's state,
// version and generation, and whether the running slot is committed.
func (a applianceMetrics) registerOTA(reg *metrics.Registry) {
	reg.Gauge("kiln_ota_available", "1 when this system has A/B slots that updates can be installed to.").Set(b2f(a.Slots != nil))
	if a.Slots == nil {
		return
	}
	st := &cached[slots.Status]{fetch: a.Slots.Status}
	perSlot := func(value func(slots.Slot) float64) func(context.Context) ([]metrics.Sample, error) {
		return from(st, func(st slots.Status) (out []metrics.Sample) {
			for _, s := range st.Slots {
				out = append(out, metrics.Sample{LabelValues: []string{string(s.Name)}, Value: value(s)})
			}
			return out
		})
	}
	reg.CollectFunc("kiln_ota_slot_running", "1 for the slot the system booted from.", metrics.KindGauge, []string{"slot"},
		perSlot(func(s slots.Slot) float64 { return b2f(s.Running) }))
	reg.CollectFunc("kiln_ota_slot_next", "1 for the slot the boot loader boots next.", metrics.KindGauge, []string{"slot"},
		perSlot(func(s slots.Slot) float64 { return b2f(s.Next) }))
	reg.CollectFunc("kiln_ota_slot_generation", "Generation installed in the slot (0 when empty).", metrics.KindGauge, []string{"slot"},
		perSlot(func(s slots.Slot) float64 { return float64(s.Generation) }))
	reg.CollectFunc("kiln_ota_slot_committed", "1 when the slot's boot entry is blessed (state good); a running slot at 0 is still on trial.", metrics.KindGauge, []string{"slot"},
		perSlot(func(s slots.Slot) float64 { return b2f(s.State == slots.StateGood) }))
	reg.CollectFunc("kiln_ota_slot_info", "The version installed in each slot (always 1).", metrics.KindGauge, []string{"slot", "version", "generation"},
		from(st, func(st slots.Status) (out []metrics.Sample) {
			for _, s := range st.Slots {
				out = append(out, metrics.Sample{LabelValues: []string{string(s.Name), s.Version, strconv.Itoa(s.Generation)}, Value: 1})
			}
			return out
		}))
	reg.CollectFunc("kiln_ota_slot_state", "1 for each slot's state (empty, incomplete, installed, trying, good, bad), 0 for the others.", metrics.KindGauge, []string{"slot", "state"},
		from(st, func(st slots.Status) (out []metrics.Sample) {
			for _, s := range st.Slots {
				for _, state := range slotStates {
					out = append(out, metrics.Sample{LabelValues: []string{string(s.Name), string(state)}, Value: b2f(s.State == state)})
				}
			}
			return out
		}))
	reg.CollectFunc("kiln_ota_failed_generations", "Generations that failed and are never retried on their own.", metrics.KindGauge, nil,
		from(st, func(st slots.Status) []metrics.Sample { return []metrics.Sample{{Value: float64(len(st.Failed))}} }))
}

// from makes a CollectFunc of fn over the cached source c.
func from[T any](c *cached[T], fn func(T) []metrics.Sample) func(context.Context) ([]metrics.Sample, error) {
	return func(ctx context.Context) ([]metrics.Sample, error) {
		v, err := c.get(ctx)
		if err != nil {
			return nil, err
		}
		return fn(v), nil
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// cached asks its source once per scrape rather than once per family.
type cached[T any] struct {
	fetch func(context.Context) (T, error)

	// mu guards at, v and err.
	mu  sync.Mutex
	at  time.Time
	v   T
	err error
}

func (c *cached[T]) get(ctx context.Context) (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < time.Second {
		return c.v, c.err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c.v, c.err = c.fetch(ctx)
	c.at = time.Now()
	return c.v, c.err
}

// mountMetrics serves GET /metrics to read-scope callers (an API token of a
// read user is what Prometheus sends): mgmt's families, then every other
// service's from its socket.
func mountMetrics(a *api.Server, env svc.Env, db *store.Store, sl slotStatus, log *slog.Logger) {
	reg := env.Registry()
	applianceMetrics{
		Version:    env.Version,
		Supervisor: supervisorapi.NewClient(supervisorapi.SocketPath(env.RunDir)),
		Slots:      sl,
		Vetting:    db,
		DataDir:    env.StateDir,
	}.register(reg)
	a.Mount("GET /metrics", api.ScopeRead, &metrics.Gatherer{
		Local:     reg,
		LocalName: "mgmt",
		Dir:       metrics.SocketDir(env.RunDir),
		Log:       log,
	})
}
