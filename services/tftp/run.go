package tftp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/svc"
)

// Run is the TFTP service's entry point. It serves provisioning.tftp.root,
// by default the image's /usr/share/kiln/ipxe; on a host without that
// directory (host mode) it serves <state>/tftp instead and says so.
func Run(ctx context.Context, env svc.Env) error {
	o := OptionsFromConfig(env.Config)
	o.Metrics = env.Metrics
	if env.Config.Provisioning.TFTP.Root == "" {
		if _, err := os.Stat(o.Root); errors.Is(err, os.ErrNotExist) {
			alt := filepath.Join(env.StateDir, "tftp")
			if err := os.MkdirAll(alt, 0o755); err != nil {
				return fmt.Errorf("creating TFTP root: %w", err)
			}
			env.Logger.Warn("TFTP root missing; serving the state directory instead (copy ipxe.efi, snponly.efi and undionly.kpxe there, or set provisioning.tftp.root)",
				"missing", o.Root, "root", alt)
			o.Root = alt
		}
	}
	st, err := store.Open(ctx, store.Path(env.StateDir))
	if err != nil {
		return fmt.Errorf("opening the machine database: %w", err)
	}
	defer st.Close()
	s, err := New(o, storeEvents{st}, env.Logger)
	if err != nil {
		return err
	}
	conn, err := ListenUDP(o.Listen)
	if err != nil {
		return err
	}
	return s.Serve(ctx, conn, env.Ready)
}

// OptionsFromConfig maps the provisioning.tftp section to server options.
func OptionsFromConfig(c config.Config) Options {
	t := c.Provisioning.TFTP
	o := DefaultOptions()
	o.Listen = c.Provisioning.TFTPListen()
	if t.Root != "" {
		o.Root = t.Root
	}
	o.MaxBlockSize = t.MaxBlockSize
	if t.MaxWindowSize > 0 {
		o.MaxWindowSize = t.MaxWindowSize
	}
	if t.MaxTransfers > 0 {
		o.MaxTransfers = t.MaxTransfers
	}
	if t.MaxPerClient > 0 {
		o.MaxPerClient = t.MaxPerClient
	}
	return o
}

// storeEvents records TFTP requests as boot events of the machine holding
// the client's address.
type storeEvents struct{ st *store.Store }

func (s storeEvents) TFTPEvent(ctx context.Context, ev Event) error {
	mac, host, err := s.st.MachineByIP(ctx, ev.Client)
	if err != nil {
		return err
	}
	detail := fmt.Sprintf("%s: %d bytes in %s", ev.File, ev.Bytes, ev.Duration.Round(time.Millisecond))
	if ev.Err != "" {
		detail = ev.File + ": " + ev.Err
	}
	return s.st.AddBootEvent(ctx, store.BootEvent{MAC: mac, Host: host, Kind: store.EventTFTP, Detail: detail, Time: ev.Time})
}
