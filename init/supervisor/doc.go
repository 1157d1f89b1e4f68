// Package supervisor starts kiln's services as separate processes in dependency
// order, watches their readiness over sd_notify, restarts them with exponential
// backoff, captures their logs and stops them in reverse order. PID 1 uses it
// inside the image and "kiln serve" uses it on an ordinary Linux host.
//
// # Processes
//
// Every service is one child process, "<Options.Exe> <Spec.Args…>", in its own
// process group (Setpgid), so a crash of one never takes another down and a stop
// reaches the service's own children too: stop is SIGTERM to the group, then
// SIGKILL to the group after Options.StopTimeout. When the main process exits,
// whatever is left of its group is killed before the service is started again.
//
// # Readiness
//
// Each service gets its own unixgram socket <RunDir>/notify/<name>.sock, passed
// as NOTIFY_SOCKET; the service sends READY=1 (go-systemd's daemon.SdNotify) once
// it answers requests. The supervisor also understands STATUS=…, STOPPING=1 and
// WATCHDOG=1. Datagrams are accepted only from the service's current process
// group (checked with SCM_CREDENTIALS), so a message left over from a crashed
// run never marks the next one ready. A service that is not ready within
// Options.StartTimeout is stopped and counted as a failure. A service starts only
// once every service in Spec.Deps is ready; the whole set is ready when every
// enabled service is, and the first time that happens the supervisor writes
// exactly "kiln: ready\n" to Options.Console.
//
// # Restarts
//
// A service that exits (or fails to become ready) is started again after a delay
// that starts at Backoff.Base and doubles up to Backoff.Max; a run that stays
// ready for Backoff.StableAfter resets it. Backoff.CrashLoopFailures failures
// within Backoff.CrashLoopWindow put the service in the crash-loop state: it is
// still retried, every Backoff.Max, and the state stays visible in Status (with
// the last exit reason) until a stable run or an operator's restart.
//
// # Logs
//
// Each service's stdout and stderr are split into lines, stamped, numbered and
// kept in a per-service ring (Logs, GET /v1/logs/<name>?since=<seq>) and appended
// to <LogDir>/<name>.log, rotated by size. The supervisor's own events about a
// service (started, ready, exited, backoff, crash loop) go to the same ring and
// file with stream "supervisor".
//
// # Control socket
//
// Start serves HTTP on the unix socket <RunDir>/supervisor.sock:
// GET /v1/status (Status as JSON), GET /v1/logs/<name>?since=<seq>[&follow=1]
// (newline-delimited JSON Lines) and POST /v1/services/<name>/restart. Client
// speaks it; "kiln status" and the management service read it.
//
// # Zombies and PID 1
//
// The supervisor starts children with os/exec and collects each one with
// cmd.Wait, through Options.Reaper. Inside the image those children are PID 1's
// children, and PID 1 also reaps orphans re-parented to it; the two must not
// race for the same child. So PID 1 passes its reaper (*reap.Reaper from
// init/reap) as Options.Reaper: its Start holds the reaper's lock across the
// fork and records the pid, its orphan sweep peeks with waitid(WNOWAIT) and
// reaps only pids it does not own, and its Wait forgets the pid after cmd.Wait.
// In host mode Options.Reaper is nil and plain cmd.Start/cmd.Wait are used.
//
// Every fork happens on one OS thread that stays locked until Stop finished,
// because Pdeathsig (SIGKILL to the children if the supervisor's process dies)
// follows the forking thread, not the process.
//
// # Using it from PID 1
//
//	sup, err := supervisor.New(specs, supervisor.Options{
//		RunDir: "/run/kiln", LogDir: "/data/log",
//		Console: consoleFile,  // /dev/console: gets "kiln: ready"
//		Reaper:  reaper,       // *reap.Reaper
//		Logger:  log,
//	})
//	err = sup.Start()
//	<-sup.Ready()          // or select with a deadline
//	sup.Healthy()          // nil while the watchdog may be petted
//	sup.Stop(ctx)          // ordered shutdown; ctx's deadline turns SIGTERM into SIGKILL
package supervisor
