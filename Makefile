# kiln — build, image, run and test. `make run` boots the appliance in QEMU;
# `make test` runs every test tier (unit, loopback, namespaces as root, QEMU).
SHELL := /bin/bash
GO ?= go
OUT ?= out
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
APPLIANCE_ID ?= kiln-dev
GOFLAGS_BUILD := -trimpath -ldflags '-s -w -X main.version=$(VERSION)'
export CGO_ENABLED := 0

# Debian packages the build and the tests need on the host.
HOST_PACKAGES := qemu-system-x86 qemu-utils ovmf systemd-boot-efi squashfs-tools gdisk dosfstools \
	e2fsprogs libc-bin ipxe ipxe-qemu mtools cpio kmod iproute2 curl udhcpc isc-dhcp-client dnsmasq \
	bind9-dnsutils atftp tftp-hpa nftables chromium tftpd-hpa kea-admin dnsperf openssh-client cryptsetup-bin \
	nfs-common nfs-kernel-server open-iscsi fio iputils-ping xorriso age chrony
# Commands whose absence means the packages above are not installed yet.
HOST_COMMANDS := qemu-system-x86_64 qemu-img mksquashfs unsquashfs sgdisk fsck.vfat mcopy e2fsck \
	dpkg-deb udhcpc dnsmasq dig atftp nft chromium tftp in.tftpd perfdhcp dnsperf ssh veritysetup \
	mount.nfs exportfs rpc.nfsd iscsiadm iscsid fio ping xorriso age chronyd

.PHONY: all build deps image image-baseline lock run test test-unit bench clean

all: build

build:
	@mkdir -p $(OUT)
	$(GO) build $(GOFLAGS_BUILD) -o $(OUT)/kiln ./cmd/kiln
	$(GO) build $(GOFLAGS_BUILD) -o $(OUT)/kiln-stage1 ./cmd/kiln-stage1
	$(GO) build $(GOFLAGS_BUILD) -o $(OUT)/kiln-agent ./cmd/kiln-agent
	$(GO) build $(GOFLAGS_BUILD) -o $(OUT)/kiln-diskless ./cmd/kiln-diskless

# deps installs the host packages once; it is a no-op when they are present. Daemons the
# packages bring (rpcbind, nfs-kernel-server, iscsid) are not started: a policy-rc.d that
# denies every start is in place during the install unless the host has its own (tests
# start their own instances inside QEMU guests, see docs/testing.md).
deps:
	@missing=""; for c in $(HOST_COMMANDS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || missing="$$missing OVMF"; \
	[ -f /usr/lib/systemd/boot/efi/systemd-bootx64.efi ] || missing="$$missing systemd-boot"; \
	if [ -n "$$missing" ]; then \
		echo "installing host packages (missing:$$missing)"; \
		if [ "$$(id -u)" != 0 ]; then echo "run as root, or install: $(HOST_PACKAGES)"; exit 1; fi; \
		policy=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy=1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(HOST_PACKAGES) >/dev/null; \
		rc=$$?; [ -z "$$policy" ] || rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	fi

# The recovery shell's u-root busybox lives in its own module (image/busybox) so the
# commands' dependencies stay out of kiln's go.mod. gosh is built with goshsmall: a plain
# line-at-a-time prompt that a serial console drives reliably (the full-screen editor
# queries the terminal and drops keys typed while it starts).
BB_CMDS := $(shell sed 's|^|github.com/u-root/u-root/cmds/core/|' image/busybox-commands.txt)
$(OUT)/bb: image/busybox/go.mod image/busybox-commands.txt
	@mkdir -p $(OUT)
	cd image/busybox && $(GO) tool makebb -go-build-tags goshsmall -o $(CURDIR)/$(OUT)/bb $(BB_CMDS)

$(OUT)/hello: image/hello/main.go
	$(GO) build $(GOFLAGS_BUILD) -o $@ ./image/hello

# OTA_KEY signs update bundles; its .pub is baked into the image. The dev key
# is made once and kept (a new key would change every later image).
OTA_KEY ?= $(OUT)/ota-dev
$(OUT)/ota-dev.pub: | build
	@[ -f $@ ] || $(OUT)/kiln keys gen --out $(OUT) --name ota-dev

image: deps build $(OUT)/bb $(OTA_KEY).pub
	$(OUT)/kiln image build --lock image/packages.lock --cache $(OUT)/cache/debs \
		--kiln $(OUT)/kiln --stage1 $(OUT)/kiln-stage1 --busybox $(OUT)/bb --agent $(OUT)/kiln-agent \
		--diskless $(OUT)/kiln-diskless --appliance-id $(APPLIANCE_ID) --version $(VERSION) --ota-key $(OTA_KEY).pub \
		--out $(OUT)/kiln.img --qcow2 $(OUT)/kiln.qcow2 \
		--vmdk $(OUT)/kiln.vmdk --ova $(OUT)/kiln.ova --vhdx $(OUT)/kiln.vhdx --iso $(OUT)/kiln.iso

# image-baseline is the same boot chain with a hello-world /init (boot benchmark).
image-baseline: deps build $(OUT)/hello
	$(OUT)/kiln image build --lock image/packages.lock --cache $(OUT)/cache/debs --kiln $(OUT)/kiln \
		--busybox '' --hello-init $(OUT)/hello --out $(OUT)/baseline.img --qcow2 $(OUT)/baseline.qcow2

# lock refreshes the pinned Debian package versions and hashes.
lock: deps build
	$(OUT)/kiln image lock --lock image/packages.lock --cache $(OUT)/cache/debs

# TARGETS vetting target VMs network-boot from the appliance on a private
# segment and are vetted on their first boot (TARGETS=0: the appliance alone).
TARGETS ?= 1
run: image
	$(OUT)/kiln vm run --image $(OUT)/kiln.qcow2 --state $(OUT)/vm --targets $(TARGETS)

test-unit:
	$(GO) vet ./...
	$(GO) test -p 1 -count=1 ./...

test: image
	$(GO) vet ./...
	KILN_IMAGE=$(CURDIR)/$(OUT)/kiln.qcow2 KILN_BIN=$(CURDIR)/$(OUT)/kiln KILN_OTA_KEY=$(CURDIR)/$(OTA_KEY).key \
		$(GO) test -p 1 -count=1 -timeout 50m ./...

# bench prints kiln's figures beside its peers': Go benchmarks (OTA install vs a raw
# write, DHCP DORA…), boot time vs a hello-world /init, DHCP/DNS/TFTP vs dnsmasq and tftpd-hpa.
bench: image image-baseline
	$(GO) test -run '^$$' -bench . -benchtime 1x $$($(GO) list ./... | grep -v /qemu/boottest)
	KILN_IMAGE=$(CURDIR)/$(OUT)/kiln.qcow2 KILN_BASELINE_IMAGE=$(CURDIR)/$(OUT)/baseline.qcow2 qemu/bench-boot.sh
	KILN_BIN=$(OUT)/kiln services/bench/provisioning.sh

clean:
	rm -rf $(OUT)
