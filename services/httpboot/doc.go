// Package httpboot is kiln's HTTP boot service: per-machine iPXE scripts and
// the boot artifacts (kernels, initrds, images) they fetch.
//
// # Scripts
//
// GET /boot/<mac>.ipxe?nonce=<nonce> (the URL a DHCP reply gives iPXE) or
// ?token=<host token> (typed at the default menu) renders the iPXE script of
// the host that owns <mac> (any notation net.ParseMAC accepts; iPXE sends ${net0/mac}) from
// the template of its boot profile (templates/*.ipxe.tmpl):
//
//   - vet: the vetting live image's kernel and initrd, the vetting run's
//     token on the kernel command line (kiln.token=…) for the agent to
//     report with;
//   - local: on UEFI "exit 1" (the firmware's boot manager moves on to the next
//     boot option, the local disk; a success status may stop at its menu), on
//     BIOS "sanboot --no-describe --drive 0x80";
//   - diskless: the diskless client image with kiln.nfsroot=<server>:/roots/<name>/<version>
//     and kiln.nfshome=<server>:/homes/<name> (docs/diskless.md);
//   - iscsi: "sanboot iscsi:<server>::::<target IQN>" with an initiator IQN;
//   - kernel: the kernel, initrd and command line set on the host.
//
// A script is only given to the machine it belongs to. The URL must carry
// either a nonce the DHCP service minted for this MAC (package bootnonce:
// unexpired, asked for from the address it was minted for, never redeemed
// before) or the token of the host owning the MAC (compared in constant
// time); and the request must come from that machine's address — the host's
// reservation, the address whose current (bound, unexpired) lease is the
// MAC's, or, for an on-link client, the address the kernel's neighbour table
// (/proc/net/arp) maps to the MAC (proxyDHCP sites, where another server
// leases the addresses). A nonce is used up only once every check passed, so
// a refused attempt from elsewhere leaves it to its machine; then every
// nonce of that exchange (MAC and xid) minted until then is refused, while
// one minted later — a reboot, even with the same xid — is served. The
// Redeemer remembers served exchanges in memory (at most 8192, each for the
// 2 minutes its nonces live) and refuses nonces minted before the service
// started: a restart costs a machine in mid-boot one retry, never a replay.
//
// Every failure path of a script ends in "exit 1", so the firmware falls
// through to its next boot device (normally the local disk). Refusals —
// unknown MAC, missing or wrong token, a host record the template cannot use —
// are answered with HTTP 200 and a script that echoes the reason on the
// console and runs "exit 1". The decision: a non-2xx answer also makes iPXE's
// chain fail and fall through, but the operator at the console would only see
// an iPXE error number, and a caller's "chain … || goto retry" would loop; an
// explicit script shows why and falls through the same way every time. The
// message does not say whether the MAC or the token was wrong (the log and the
// boot event do). Scripts are sent with Cache-Control: no-store.
//
// GET /boot/default.ipxe is a small menu for clients that chainloaded without
// a MAC-specific URL: boot the local disk (default after 10 s, "exit 1"),
// type a boot token and retry with ${net0/mac}, or an iPXE shell.
//
// # Registration at the machine
//
// With Options.Register set (provisioning.diskless.register), a machine
// kiln enrolled by itself (Host.Enrolled) that passes the checks above gets
// a registration form instead of its profile's script: a menu, a prompt for
// its name and, when Roles are set, a menu of rooms/roles. The form sends
// GET /boot/<mac>/register?ticket=…&name=…&role=… (Debian's iPXE has no
// params/POST). The ticket (bootnonce.Key.RegistrationTicket) binds the
// request to the MAC and the address the form went to, and the request
// must still come from the MAC's lease or reservation; it lives 30 minutes
// and every answer carries a fresh one. A refused name re-serves the form
// with the reason; policy open applies the registration and serves the
// new host's script; policy approve records it and serves a script that
// polls the same URL without a name every Retry until an operator approves
// (then the host's script) or rejects (the form, with the reason). Names
// submitted are limited per source (RegisterOptions.Limit); each step is a
// boot event of kind "register".
//
// # Artifacts
//
// GET and HEAD /files/<path> serve regular files below Options.FilesRoot with
// http.ServeContent on an *os.File: Range requests, Content-Length, and
// sendfile(2) for the body. There are no redirects and no directory listings;
// paths with "..", "." or empty components, backslashes or control bytes are
// 404, and os.Root stops symlinks leading out of the root. Artifacts are not
// secret (no token): put nothing confidential there.
//
// GET and HEAD /ipxe/<file> serve the iPXE binaries of Options.IPXERoot (the
// TFTP root) the same way: the DHCP service points UEFI HTTP boot clients at
// <http_base>/ipxe/ipxe.efi.
//
// The listen address, the files root and the iPXE directory come from
// provisioning.http_boot.listen, provisioning.http_boot.root and
// provisioning.tftp.root.
//
// # Boot events
//
// Every script request (served or refused) and every artifact fetch that
// starts at byte 0 is reported to an EventSink: kinds "script",
// "script_denied" and "kernel" (an artifact; scripts add ?mac=<mac> to the
// artifact URLs so the event names the machine). Anyone on the LAN can make
// these requests, so what is stored is bounded (EventLimit): per source (an
// IPv4 address, an IPv6 /64) a burst of 10 then one per 6 s, all sources
// together 200 then 20/s, 4096 sources remembered (least recently seen
// forgotten first, constant time per request); held-back events are
// counted into the source's next stored one ("N more events … suppressed"),
// and refusals of a suppressed source are logged at debug level only. The
// service also prunes the table at start and hourly: events older than 30
// days go, and at most the newest 100,000 stay (DHCP's events included).
package httpboot
