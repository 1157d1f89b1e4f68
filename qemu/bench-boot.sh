#!/usr/bin/env bash
# bench-boot.sh — boot-time benchmark of the kiln image under QEMU/TCG.
#
# Measures firmware → "kiln: ready" (first boot on a fresh overlay, and the
# warm boot after it) against the same firmware/systemd-boot/kernel chain with
# a hello-world /init (a baseline image built here with
# `kiln image build --hello-init`), median of KILN_BENCH_RUNS runs (default 3),
# with a per-phase breakdown taken from serial console timestamps.
#
# usage: qemu/bench-boot.sh            (from the repository root; `make image` first)
# env:   KILN_IMAGE           image to measure (default out/kiln.qcow2)
#        KILN_BASELINE_IMAGE  baseline image (default out/baseline.qcow2, built if missing
#                             or older than out/kiln.qcow2)
#        KILN_BENCH_RUNS      runs per image (default 3)
#        OUT, CACHE           build dir (default out) and .deb cache (default $OUT/cache)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}
GO=${GO:-go}
CACHE=${CACHE:-$OUT/cache}
# go test runs in the package directory: make the paths absolute.
KILN_IMAGE=$(realpath -m "${KILN_IMAGE:-$OUT/kiln.qcow2}")
KILN_BASELINE_IMAGE=$(realpath -m "${KILN_BASELINE_IMAGE:-$OUT/baseline.qcow2}")
export KILN_IMAGE KILN_BASELINE_IMAGE

if [ ! -f "$KILN_IMAGE" ]; then
	echo "bench-boot: $KILN_IMAGE is missing: run make image first" >&2
	exit 1
fi
if [ ! -f "$KILN_BASELINE_IMAGE" ] || [ "$KILN_BASELINE_IMAGE" -ot "$KILN_IMAGE" ]; then
	echo "bench-boot: building the baseline image $KILN_BASELINE_IMAGE" >&2
	CGO_ENABLED=0 $GO build -trimpath -ldflags '-s -w' -o "$OUT/kiln" ./cmd/kiln
	CGO_ENABLED=0 $GO build -trimpath -ldflags '-s -w' -o "$OUT/hello" ./image/hello
	"$OUT/kiln" image build --lock image/packages.lock --cache "$CACHE" \
		--kiln "$OUT/kiln" --hello-init "$OUT/hello" --busybox '' \
		--appliance-id kiln-baseline --version baseline \
		--out "$OUT/baseline.img" --qcow2 "$KILN_BASELINE_IMAGE"
	rm -f "$OUT/baseline.img"
fi
exec $GO test -count=1 -run '^$' -bench '^BenchmarkBoot$' -benchtime 1x -timeout 60m ./qemu/boottest
