package ntp

import (
	"context"

	"golang.org/x/sync/errgroup"

	"kiln.dev/kiln/services/svc"
)

// Run is the NTP service's entry point: the server on ntp.listen, and the
// syncer keeping the system clock from ntp.servers when there are any.
func Run(ctx context.Context, env svc.Env) error {
	state := &State{}
	srv := New(Options{Listen: env.Config.NTP.ListenAddr(), State: state, Metrics: env.Metrics}, env.Logger)
	conn, err := ListenUDP(env.Config.NTP.ListenAddr())
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	if servers := env.Config.NTP.ServerAddrs(); len(servers) > 0 {
		sy := NewSyncer(SyncOptions{Servers: servers, Clock: KernelClock{}, State: state, Metrics: env.Metrics}, env.Logger)
		g.Go(func() error { return sy.Run(ctx) })
	} else {
		env.Logger.Warn("ntp.servers is empty: kiln does not set its clock, and NTP clients are told it is unsynchronized (leap indicator 3, stratum 16) and will not use it; list upstream servers in ntp.servers")
	}
	g.Go(func() error { return srv.Serve(ctx, conn, env.Ready) })
	return g.Wait()
}
