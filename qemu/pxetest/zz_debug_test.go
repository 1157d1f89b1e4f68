package pxetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/qemu/boottest"
)

func TestZZDebug(t *testing.T) {
	if os.Getenv("PXE_DEBUG") == "" {
		t.Skip()
	}
	image := boottest.Image(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	configPath, hostsPath := filepath.Join(dir, "kiln.yaml"), filepath.Join(dir, "hosts.yaml")
	os.WriteFile(configPath, []byte(applianceConfig), 0o644)
	os.WriteFile(hostsPath, []byte(hostsFile), 0o644)
	applianceNIC, _, _ := qemu.L2Pair(applianceMAC, ovmfMAC)
	work, _ := os.MkdirTemp("", "kiln-pxedebug-")
	vm, err := qemu.Start(ctx, qemu.Config{WorkDir: work,
		Disks: []qemu.Disk{{Path: boottest.NewOverlay(t, image, "")}},
		Mgmt:  &qemu.Mgmt{HTTPSPort: -1, HTTPPort: -1},
		NICs:  []qemu.NIC{applianceNIC},
		Extra: []string{"-fw_cfg", "name=opt/kiln/config,file=" + configPath, "-fw_cfg", "name=opt/kiln/hosts.yaml,file=" + hostsPath},
	}, qemu.Options{Logger: boottest.TestLogger(t), AnswerCursorQueries: true})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	vm.Expect(ctx, boottest.ReadyRE, 60*time.Second)
	r := boottest.NewRecovery(t, ctx, vm)
	r.Menu()
	r.Shell()
	r.Run("cat /data/log/netconf.log")
	r.Run("ls /sys/class/net; cat /proc/modules")
	t.Logf("serial: %s/serial.log", work)
}
