#!/usr/bin/env bash
# Provisioning benchmarks: kiln's DHCP, DNS and TFTP services side by side with
# the reference servers from Debian, in the same network namespace setup, with
# the ratios printed at the end.
#
#   DHCP  DORA/s and p99 latency, perfdhcp (kea-admin)  vs dnsmasq
#   DNS   authoritative queries/s, dnsperf              vs dnsmasq (--auth-zone)
#   TFTP  MB/s for a 32 MiB file, atftp client          vs tftpd-hpa (in.tftpd),
#         with and without RFC 7440 windowsize
#
# Everything runs in two private namespaces joined by one veth pair (MTU 1500);
# no traffic leaves them. Needs root. Each measurement is bounded
# ($BENCH_SECONDS, default 10 s, for DHCP and DNS; TFTP transfers time out
# after 60 s).
#
#   KILN_BIN=out/kiln services/bench/provisioning.sh
#
# Environment: KILN_BIN (default out/kiln), BENCH_SECONDS (10), DHCP_RATE
# (offered DORA/s for the throughput run, 1000), DHCP_LATENCY_RATE (offered
# DORA/s for the latency run, 100), BENCH_OUT (results directory, a temp dir).
set -euo pipefail

KILN=${KILN_BIN:-out/kiln}
SECS=${BENCH_SECONDS:-10}
DHCP_RATE=${DHCP_RATE:-1000}
DHCP_LATENCY_RATE=${DHCP_LATENCY_RATE:-100}

die() { echo "provisioning bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
[ -x "$KILN" ] || die "no kiln binary at $KILN (make build, or set KILN_BIN)"
KILN=$(cd "$(dirname "$KILN")" && pwd)/$(basename "$KILN")
for c in ip perfdhcp dnsperf dnsmasq in.tftpd atftp awk; do
	command -v "$c" >/dev/null || die "$c not installed (apt-get install iproute2 kea-admin dnsperf dnsmasq tftpd-hpa atftp gawk)"
done

OUT=${BENCH_OUT:-$(mktemp -d /tmp/kiln-bench.XXXXXX)}
mkdir -p "$OUT"
SRV=kbsrv$$ CLI=kbcli$$
SRV_IP=10.99.0.1 CLI_IP=10.99.0.2
PIDS=()

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	ip netns del "$SRV" 2>/dev/null || true
	ip netns del "$CLI" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$SRV"
ip netns add "$CLI"
ip link add "ks$$" type veth peer name "kc$$"
ip link set "ks$$" netns "$SRV"
ip link set "kc$$" netns "$CLI"
ip -n "$SRV" addr add "$SRV_IP/16" dev "ks$$"
ip -n "$CLI" addr add "$CLI_IP/16" dev "kc$$"
for ns in "$SRV" "$CLI"; do
	ip -n "$ns" link set lo up
done
ip -n "$SRV" link set "ks$$" up
ip -n "$CLI" link set "kc$$" up
insrv() { ip netns exec "$SRV" "$@"; }
incli() { ip netns exec "$CLI" "$@"; }

# start NAME CMD... runs a server in the server namespace; its pid is $LAST
# (ip netns exec execs the server, so the pid is the server's).
start() {
	local name=$1
	shift
	ip netns exec "$SRV" "$@" >"$OUT/$name.log" 2>&1 &
	LAST=$!
	PIDS+=("$LAST")
}
# stop PID PROTO PORT: stops a server and waits until its port is free (10 s).
stop() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	local flag=-uln
	[ "$2" = tcp ] && flag=-tln
	for _ in $(seq 100); do
		insrv ss -H $flag "sport = :$3" | grep -q . || return 0
		sleep 0.1
	done
	die "$2 port $3 still in use after stopping pid $1"
}
# wait_port PROTO PORT: until the server started last listens (10 s).
wait_port() {
	local flag=-uln
	[ "$1" = tcp ] && flag=-tln
	for _ in $(seq 100); do
		kill -0 "$LAST" 2>/dev/null || die "the server (pid $LAST) exited; see $OUT/*.log"
		insrv ss -H $flag "sport = :$2" | grep -q . && return 0
		sleep 0.1
	done
	die "nothing listens on $1 port $2 after 10 s (see $OUT/*.log)"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# kiln_config FILE EXTRA: a config with only the services named enabled.
kiln_config() {
	cat >"$1" <<EOF
hostname: bench
management: {https_port: 0, http_port: 0}
services:
  mgmt: {enabled: false}
provisioning:
  domain: bench.example
  subnets:
    - name: bench
      cidr: 10.99.0.0/16
      mode: authoritative
      pool: {start: 10.99.1.0, end: 10.99.255.254}
      conflict_probe: false
$2
EOF
}

########## DHCP
# perfdhcp acts as a relay agent (giaddr $CLI_IP) and unicasts to the server;
# both servers answer relayed requests for 10.99.0.0/16. Address probing is off
# on both (dnsmasq --no-ping, kiln conflict_probe: false): the benchmark
# measures the servers, not probe timeouts. Every client is new (-R 20000
# MACs): kiln also enrolls each one as a host in its machine database.

# dhcp_run NAME RATE: perfdhcp for $SECS at RATE; prints "rate p99_do p99_ra" (ms).
dhcp_run() {
	local f="$OUT/perfdhcp-$1-$2.txt"
	timeout $((SECS + 30)) ip netns exec "$CLI" perfdhcp -4 -r "$2" -R 20000 -p "$SECS" -s 1 -x t "$SRV_IP" >"$f" 2>&1 || true
	awk '
		/^Rate:/ { rate = $2 }
		/^\*\*\*Timestamps for packets: DISCOVER-OFFER/ { sec = "do"; next }
		/^\*\*\*Timestamps for packets: REQUEST-ACK/ { sec = "ra"; next }
		/^\*\*\*/ { sec = "" }
		sec != "" && /^sent \/ received:/ { d = ($6 - $4) * 1000; if (sec == "do") DO[n1++] = d; else RA[n2++] = d }
		function p99(a, n,   i, j, t) {
			if (n == 0) return "n/a"
			for (i = 1; i < n; i++) { t = a[i]; for (j = i - 1; j >= 0 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t }
			return sprintf("%.1f", a[int((n - 1) * 0.99)])
		}
		END { printf "%s %s %s\n", (rate == "" ? 0 : rate), p99(DO, n1), p99(RA, n2) }
	' "$f"
}

dhcp_bench() {
	local name=$1 rate=$2 pid
	if [ "$name" = kiln ]; then
		rm -rf "$OUT/kiln-dhcp"
		mkdir -p "$OUT/kiln-dhcp/state" "$OUT/kiln-dhcp/run"
		kiln_config "$OUT/kiln-dhcp/kiln.yaml" ""
		start kiln-dhcp "$KILN" service dhcp --config "$OUT/kiln-dhcp/kiln.yaml" --state "$OUT/kiln-dhcp/state" --run "$OUT/kiln-dhcp/run"
	else
		rm -f "$OUT/dnsmasq.leases"
		start dnsmasq-dhcp dnsmasq --no-daemon --conf-file=/dev/null --port=0 --no-ping --dhcp-authoritative \
			--dhcp-lease-max=1000000 --dhcp-leasefile="$OUT/dnsmasq.leases" --interface="ks$$" --bind-interfaces \
			--dhcp-range=10.99.1.0,10.99.255.254,255.255.0.0,12h --log-facility="$OUT/dnsmasq-dhcp.detail.log"
	fi
	pid=$LAST
	wait_port udp 67
	dhcp_run "$name" "$rate" >"$OUT/dhcp-$name-$rate.result"
	stop "$pid" udp 67
}

echo "== DHCP: perfdhcp, $SECS s per run, 20000 new clients, relayed, no address probes"
for rate in "$DHCP_RATE" "$DHCP_LATENCY_RATE"; do
	dhcp_bench kiln "$rate"
	dhcp_bench dnsmasq "$rate"
done
read -r K_RATE _ _ <"$OUT/dhcp-kiln-$DHCP_RATE.result"
read -r D_RATE _ _ <"$OUT/dhcp-dnsmasq-$DHCP_RATE.result"
read -r _ K_DO K_RA <"$OUT/dhcp-kiln-$DHCP_LATENCY_RATE.result"
read -r _ D_DO D_RA <"$OUT/dhcp-dnsmasq-$DHCP_LATENCY_RATE.result"
printf "  %-8s %10s DORA/s (offered %s/s)   p99 at %s/s: DISCOVER-OFFER %s ms, REQUEST-ACK %s ms\n" \
	kiln "$K_RATE" "$DHCP_RATE" "$DHCP_LATENCY_RATE" "$K_DO" "$K_RA" \
	dnsmasq "$D_RATE" "$DHCP_RATE" "$DHCP_LATENCY_RATE" "$D_DO" "$D_RA"

########## DNS
# 1000 hosts with reserved addresses; kiln serves them from its machine
# database, dnsmasq from a hosts file as an authoritative zone. dnsperf asks
# for their A records (all exist) with 100 queries outstanding.
echo "== DNS: dnsperf, $SECS s per server, A queries for 1000 names in an authoritative zone"
mkdir -p "$OUT/kiln-dns/state" "$OUT/kiln-dns/run"
{
	echo "name,ipv4"
	for i in $(seq 1 1000); do echo "node$i,10.99.$((i / 250 + 1)).$((i % 250 + 1))"; done
} >"$OUT/hosts.csv"
awk -F, 'NR > 1 { print $2, $1 ".bench.example", $1 }' "$OUT/hosts.csv" >"$OUT/hosts.txt"
awk -F, 'NR > 1 { print $1 ".bench.example A" }' "$OUT/hosts.csv" >"$OUT/queries.txt"
"$KILN" hosts import --state "$OUT/kiln-dns/state" "$OUT/hosts.csv" >/dev/null
kiln_config "$OUT/kiln-dns/kiln.yaml" "  dns: {listen: \"$SRV_IP:53\"}"

dns_run() {
	local f="$OUT/dnsperf-$1.txt"
	timeout $((SECS + 30)) ip netns exec "$CLI" dnsperf -s "$SRV_IP" -d "$OUT/queries.txt" -l "$SECS" -c 4 -q 100 >"$f" 2>&1 || true
	awk '/Queries per second:/ { q = $4 } /Queries completed:/ { c = $3 } /Average Latency/ { l = $4 }
		END { printf "%s %s %s\n", (q == "" ? 0 : q), c, l * 1000 }' "$f"
}
start kiln-dns "$KILN" service dns --config "$OUT/kiln-dns/kiln.yaml" --state "$OUT/kiln-dns/state" --run "$OUT/kiln-dns/run"
pid=$LAST
wait_port udp 53
sleep 1 # the zone is built from the database just after the socket opens
dns_run kiln >"$OUT/dns-kiln.result"
stop "$pid" udp 53
start dnsmasq-dns dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts --addn-hosts="$OUT/hosts.txt" \
	--listen-address="$SRV_IP" --bind-interfaces --auth-zone=bench.example --auth-server=bench.bench.example,"$SRV_IP" \
	--cache-size=10000
pid=$LAST
wait_port udp 53
dns_run dnsmasq >"$OUT/dns-dnsmasq.result"
stop "$pid" udp 53
read -r K_QPS _ K_LAT <"$OUT/dns-kiln.result"
read -r D_QPS _ D_LAT <"$OUT/dns-dnsmasq.result"
printf "  %-8s %10s queries/s   average latency %s ms\n" kiln "$K_QPS" "$K_LAT" dnsmasq "$D_QPS" "$D_LAT"

########## TFTP
# A 32 MiB file with 1428-byte blocks (what PXE ROMs ask for on Ethernet),
# fetched with atftp; with windowsize 16 the client asks for RFC 7440
# windows (tftpd-hpa does not implement it and answers without).
echo "== TFTP: atftp, 32 MiB file, blksize 1428, best of 3"
mkdir -p "$OUT/tftp-root" "$OUT/kiln-tftp/state" "$OUT/kiln-tftp/run"
head -c $((32 << 20)) /dev/urandom >"$OUT/tftp-root/big.bin"
chmod 0755 "$OUT" "$OUT/tftp-root"
chmod 0644 "$OUT/tftp-root/big.bin"
kiln_config "$OUT/kiln-tftp/kiln.yaml" "  tftp: {listen: \"$SRV_IP:69\", root: \"$OUT/tftp-root\"}"

# tftp_run NAME WINDOW: best MB/s of 3 fetches (WINDOW 0: not asked).
tftp_run() {
	local best=0 opts=(--option "blksize 1428") t0 t1 mbs
	[ "$2" -gt 0 ] && opts+=(--option "windowsize $2")
	for i in 1 2 3; do
		rm -f "$OUT/got.bin"
		t0=$(date +%s.%N)
		if ! timeout 60 ip netns exec "$CLI" atftp "${opts[@]}" -g -r big.bin -l "$OUT/got.bin" "$SRV_IP" 69 \
			>"$OUT/atftp-$1-$2-$i.log" 2>&1; then
			echo "  $1 windowsize $2 run $i failed (see $OUT/atftp-$1-$2-$i.log)" >&2
			continue
		fi
		t1=$(date +%s.%N)
		cmp -s "$OUT/got.bin" "$OUT/tftp-root/big.bin" || { echo "  $1 run $i: received file differs" >&2; continue; }
		mbs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", 32 / (b - a) }')
		best=$(awk -v a="$best" -v b="$mbs" 'BEGIN { print (b > a ? b : a) }')
	done
	echo "$best"
}
start kiln-tftp "$KILN" service tftp --config "$OUT/kiln-tftp/kiln.yaml" --state "$OUT/kiln-tftp/state" --run "$OUT/kiln-tftp/run"
pid=$LAST
wait_port udp 69
K_T1=$(tftp_run kiln 0)
K_TW=$(tftp_run kiln 16)
stop "$pid" udp 69
start tftpd-hpa in.tftpd -4 --foreground --listen --address "$SRV_IP:69" --secure --blocksize 1468 --user root "$OUT/tftp-root"
pid=$LAST
wait_port udp 69
H_T1=$(tftp_run tftpd-hpa 0)
H_TW=$(tftp_run tftpd-hpa 16)
stop "$pid" udp 69
printf "  %-9s %8s MB/s without windowsize   %8s MB/s with windowsize 16\n" kiln "$K_T1" "$K_TW" tftpd-hpa "$H_T1" "$H_TW"

echo "== Ratios (kiln / reference; above 1 means kiln is faster, for latency lower is better)"
printf "  DHCP DORA/s          kiln/dnsmasq    %s\n" "$(ratio "$K_RATE" "$D_RATE")"
printf "  DHCP p99 DO latency  kiln/dnsmasq    %s\n" "$(ratio "$K_DO" "$D_DO")"
printf "  DHCP p99 RA latency  kiln/dnsmasq    %s\n" "$(ratio "$K_RA" "$D_RA")"
printf "  DNS queries/s        kiln/dnsmasq    %s\n" "$(ratio "$K_QPS" "$D_QPS")"
printf "  TFTP MB/s            kiln/tftpd-hpa  %s (no windowsize)\n" "$(ratio "$K_T1" "$H_T1")"
printf "  TFTP MB/s            kiln/tftpd-hpa  %s (windowsize 16 asked; tftpd-hpa ignores it)\n" "$(ratio "$K_TW" "$H_TW")"
echo "  (raw output in $OUT)"
