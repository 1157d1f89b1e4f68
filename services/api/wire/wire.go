// Package wire holds the operator API's JSON shapes, shared by the server
// (services/api) and its typed client (services/api/apiclient) so the two
// cannot drift apart. It imports only the standard library.
package wire

import "time"

// ErrorBody is the one error shape every route answers with:
// {"error":{"code":"…","message":"…","field":"…"}}. Details lists every
// problem when there are several (the first is repeated at the top).
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is one problem.
type ErrorDetail struct {
	Code    string        `json:"code"`
	Message string        `json:"message"`
	Field   string        `json:"field,omitempty"`
	Line    int           `json:"line,omitempty"` // line of an import file
	Details []ErrorDetail `json:"details,omitempty"`
}

// TunnelProtocol is the Upgrade token of the vetting run's TCP tunnel route.
const TunnelProtocol = "kiln-tcp"

// Info is GET /api/v1/info, answered before login.
type Info struct {
	SiteName    string `json:"site_name"`
	LoginBanner string `json:"login_banner,omitempty"`
	Version     string `json:"version,omitempty"`
}

// HostInput is a host as clients send it.
type HostInput struct {
	Name string   `json:"name"`
	MACs []string `json:"macs"`
	Role string   `json:"role,omitempty"`
	// BootProfile is vet, local (default), diskless, iscsi or kernel.
	BootProfile string   `json:"boot_profile,omitempty"`
	IPv4        string   `json:"ipv4,omitempty"`
	Aliases     []string `json:"aliases,omitempty"`
	// ExpectedSpec is a YAML mapping describing the hardware the host should have.
	ExpectedSpec string `json:"expected_spec,omitempty"`
	WoLMAC       string `json:"wol_mac,omitempty"`
	SwitchPort   string `json:"switch_port,omitempty"`
	CircuitID    string `json:"circuit_id,omitempty"`
	RemoteID     string `json:"remote_id,omitempty"`
	IPXEBinary   string `json:"ipxe_binary,omitempty"`
	// Kernel and Initrd (a path below the HTTP boot files root or an http(s)
	// URL) are what boot profile kernel boots; Cmdline is added to the
	// kernel command line.
	Kernel  string `json:"kernel,omitempty"`
	Initrd  string `json:"initrd,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
	// RootImage is the NFS root image of a diskless host: "name" (its
	// promoted version) or "name@N"; Home the home export it mounts. Empty:
	// the role's default (provisioning.nfs.roles).
	RootImage string `json:"root_image,omitempty"`
	Home      string `json:"home,omitempty"`
}

// Host is a host as the API returns it, with its live state.
type Host struct {
	HostInput
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// Lease is the host's current DHCP lease, if any.
	Lease *Lease `json:"lease,omitempty"`
	// LastEvent is the newest boot event of any of its MACs.
	LastEvent *BootEvent `json:"last_event,omitempty"`
}

// ImportResult is the answer of POST /api/v1/hosts/import.
type ImportResult struct {
	Created int `json:"created"`
	Updated int `json:"updated"`
}

// Lease is one DHCP lease.
type Lease struct {
	IP     string `json:"ip"`
	Subnet string `json:"subnet"`
	MAC    string `json:"mac,omitempty"`
	// Host is the kiln host owning the MAC, if any.
	Host string `json:"host,omitempty"`
	// Hostname is what the client called itself (DHCP option 12).
	Hostname  string    `json:"hostname,omitempty"`
	ClientID  string    `json:"client_id,omitempty"`
	RelayInfo string    `json:"relay_info,omitempty"`
	State     string    `json:"state"`
	Active    bool      `json:"active"`
	Expires   time.Time `json:"expires"`
	Updated   time.Time `json:"updated"`
}

// BootEvent is one step of a machine's network boot (DHCP offer, TFTP or
// HTTP fetch, …) as the boot services record it.
type BootEvent struct {
	ID     int64     `json:"id"`
	MAC    string    `json:"mac"`
	Host   string    `json:"host,omitempty"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail,omitempty"`
	Time   time.Time `json:"time"`
}
