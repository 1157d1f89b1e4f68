package nfs

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/svc"
)

// InUse is how long after a client last used a root image version kiln
// counts it as in use: a running client re-asks the kernel's export cache
// (answered with a TTL of 30 minutes, refreshed after half of it) while it
// reads its root, so a machine that is up is seen at least that often.
const InUse = time.Hour

// Run is the nfs service: it starts the kernel's nfsd (left running when
// the service stops, so a restart never cuts clients off), answers its
// export-cache upcalls from the plan computed from the machine database and
// the config, and applies a new plan whenever the database changes (checked
// every 2 s) and every 30 s (homes appearing, leases expiring).
func Run(ctx context.Context, env svc.Env) error {
	lay := LayoutOf(env.StateDir)
	if err := lay.Prepare(); err != nil {
		return err
	}
	k := DefaultKernel(lay.State)
	k.Threads = env.Config.Provisioning.NFSThreads()
	if err := k.Start(); err != nil {
		return err
	}
	st, err := store.Open(ctx, store.Path(env.StateDir))
	if err != nil {
		return fmt.Errorf("opening the machine database: %w", err)
	}
	defer st.Close()
	// Open the channels before the first apply: its flush makes the kernel
	// ask again, and only readers already open hear it.
	ch, err := k.OpenChannels()
	if err != nil {
		return err
	}
	defer ch.Close()
	use := &usage{seen: map[[2]string]time.Time{}}
	s := &service{st: st, env: env, exports: Exports{Answerer: &Answerer{Used: use.mark}, Kernel: k}, use: use, log: env.Logger,
		homes: Homes{Layout: lay, Mke2fs: tool("mke2fs"), Resize2fs: tool("resize2fs")}}
	if _, err := s.apply(ctx); err != nil {
		return fmt.Errorf("applying the exports: %w", err)
	}
	served := make(chan error, 1)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { served <- ch.Serve(sctx, s.exports.Answerer, env.Logger) }()
	env.Ready()
	err = s.watch(ctx, served, 2*time.Second, 30*time.Second)
	stop()
	s.use.flush(context.WithoutCancel(ctx), st, env.Logger)
	return err
}

type service struct {
	st      *store.Store
	env     svc.Env
	exports Exports
	use     *usage
	homes   Homes
	log     *slog.Logger
}

// apply computes and puts in force the plan of the database as it is now.
func (s *service) apply(ctx context.Context) (Plan, error) {
	// A home that cannot be made or grown is left out (its hosts are
	// refused, saying so); the others are served.
	if _, err := s.homes.Ensure(s.env.Config.Provisioning.NFS.Homes); err != nil {
		s.log.Error("preparing homes", "err", err)
	}
	in, err := Desired(ctx, s.st, s.env.Config.Provisioning, s.env.StateDir, time.Now())
	if err != nil {
		return Plan{}, err
	}
	p, changed, err := s.exports.Apply(in)
	if err != nil {
		return Plan{}, err
	}
	if changed {
		s.log.Info("exports applied", "exports", len(p.Exports), "clients", len(p.Clients), "refused", len(p.Refused))
		for _, r := range p.Refused {
			s.log.Warn("host refused", "host", r.Host, "addr", r.Addr, "reason", r.Reason)
		}
	}
	return p, nil
}

// watch re-applies on database changes and every resync; a plan that
// cannot be served is logged and the one in force stays.
func (s *service) watch(ctx context.Context, served <-chan error, poll, resync time.Duration) error {
	last, _ := s.st.DataVersion(ctx)
	lastSync := time.Now()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-served:
			if err == nil {
				return nil
			}
			return err
		case <-t.C:
		}
		s.use.flush(ctx, s.st, s.log)
		v, err := s.st.DataVersion(ctx)
		if err != nil {
			s.log.Warn("reading the database version", "err", err)
			continue
		}
		if v == last && time.Since(lastSync) < resync {
			continue
		}
		if _, err := s.apply(ctx); err != nil {
			s.log.Error("the new exports cannot be served; the exports in force stay", "err", err)
		}
		last, lastSync = v, time.Now()
	}
}

// usage collects what the answerer hears clients use, for the database.
type usage struct {
	// mu guards seen.
	mu   sync.Mutex
	seen map[[2]string]time.Time // (host, export) → when
}

func (u *usage) mark(host, export string) {
	u.mu.Lock()
	u.seen[[2]string{host, export}] = time.Now()
	u.mu.Unlock()
}

// flush writes what was heard since the last flush; what fails to be
// written is kept for the next one.
func (u *usage) flush(ctx context.Context, st *store.Store, log *slog.Logger) {
	u.mu.Lock()
	seen := u.seen
	u.seen = map[[2]string]time.Time{}
	u.mu.Unlock()
	for k, t := range seen {
		if err := st.MarkNFSUse(ctx, k[0], k[1], t); err != nil {
			log.Warn("recording NFS use", "err", err)
			u.mu.Lock()
			if _, newer := u.seen[k]; !newer {
				u.seen[k] = t
			}
			u.mu.Unlock()
		}
	}
}
