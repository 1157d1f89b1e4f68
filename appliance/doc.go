// Package appliance is kiln as a whole, wired once for both ways it runs:
// as PID 1 inside the image (PID1, for init/pid1) and as kiln serve on a
// Linux host (Serve). It owns the service catalog (one entry per service,
// whose Run lives in the service's own package), the supervisor's specs,
// the import of provisioning.hosts_file, the first-login notice, the
// recovery console's wiring and PID 1's OTA hooks (prepare a boot, commit
// or roll back a trial one). cmd/kiln only parses flags and calls it.
package appliance
