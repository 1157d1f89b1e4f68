package supervisor

import "kiln.dev/kiln/init/supervisor/supervisorapi"

// The control socket's wire types live in the leaf supervisorapi (so services
// can read them without importing the supervisor); these names keep the
// supervisor's own API unchanged.
type (
	State         = supervisorapi.State
	ServiceStatus = supervisorapi.ServiceStatus
	Status        = supervisorapi.Status
	Line          = supervisorapi.Line
	Client        = supervisorapi.Client
)

// Service states.
const (
	StateStopped   = supervisorapi.StateStopped
	StateStarting  = supervisorapi.StateStarting
	StateReady     = supervisorapi.StateReady
	StateBackoff   = supervisorapi.StateBackoff
	StateCrashLoop = supervisorapi.StateCrashLoop
	StateStopping  = supervisorapi.StateStopping
)

// Streams a Line can come from.
const (
	StreamStdout     = supervisorapi.StreamStdout
	StreamStderr     = supervisorapi.StreamStderr
	StreamSupervisor = supervisorapi.StreamSupervisor
)

// NewClient returns a client for the control socket at path (see SocketPath).
func NewClient(path string) *Client { return supervisorapi.NewClient(path) }
