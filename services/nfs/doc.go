// Package nfs owns kiln's NFS export service: it runs the kernel's nfsd
// (NFSv4.1/4.2 over TCP 2049 only) and plays mountd's role itself, answering
// the kernel's export-cache upcalls (/proc/net/rpc/auth.unix.ip, nfsd.export,
// nfsd.fh) from a desired state that a pure function computes from the
// machine database and the config.
//
// The exported tree is one directory on the data partition, the export root:
//
//	<export root>/            NFSv4 pseudo-root (fsid 0, directories only)
//	<export root>/roots/<name>/<version>   root images, read-only
//	<export root>/homes/<name>             homes, read-write
//
// Only known hosts with an address inside a provisioning subnet get an auth
// domain (their host name); every other address is refused at the first
// request. Each host sees only the pseudo directories leading to what it may
// mount. Every export has a fixed fsid derived from its path, so file handles
// stay valid across restarts of the service and of the appliance.
package nfs
