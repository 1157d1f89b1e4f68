package vmdisk

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"text/template"
	"time"
)

// Machine is the virtual hardware an OVA describes.
type Machine struct {
	Name      string // VM name and OVA member prefix, e.g. "kiln"
	CPUs      int
	MemoryMiB int
	// Firmware VMware boots the VM with: "efi" or "bios". VirtualBox reads no
	// firmware from OVF 1.0 and boots BIOS.
	Firmware string
}

// ovaTemplate is an OVF 1.0 envelope with one disk on an LSI Logic SCSI controller
// (both VMware and VirtualBox create that controller from OVF) and one E1000 NIC
// (both have it). RASD elements are in the schema's alphabetical order; VMware's
// parser rejects any other.
var ovaTemplate = template.Must(template.New("ovf").Parse(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="{{.Disk}}" ovf:id="file1" ovf:size="{{.DiskFileSize}}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{{.Capacity}}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized" ovf:populatedSize="{{.Populated}}"/>
  </DiskSection>
  <NetworkSection>
    <Info>The logical networks</Info>
    <Network ovf:name="lan">
      <Description>The provisioning LAN (DHCP, TFTP, HTTP boot) and management</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{{.M.Name}}">
    <Info>kiln appliance</Info>
    <Name>{{.M.Name}}</Name>
    <OperatingSystemSection ovf:id="96" vmw:osType="debian11_64Guest">
      <Info>The guest operating system</Info>
      <Description>kiln (Linux 6.1, 64-bit)</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{{.M.Name}}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>{{.M.CPUs}} virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{{.M.CPUs}}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory size</rasd:Description>
        <rasd:ElementName>{{.M.MemoryMiB}} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{{.M.MemoryMiB}}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI controller</rasd:Description>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>lan</rasd:Connection>
        <rasd:Description>E1000 ethernet adapter on "lan"</rasd:Description>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="{{.M.Firmware}}"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`))

// WriteOVA writes an OVA (a USTAR tar: NAME.ovf, NAME.mf with SHA-256 sums, then
// NAME-disk1.vmdk streamOptimized) of the raw image src to dst. tmpDir holds the
// VMDK while its size, which the tar header and the descriptor need, is found.
func WriteOVA(dst io.Writer, src io.ReaderAt, size int64, m Machine, o Options, tmpDir string) (int64, error) {
	if m.Name == "" || m.CPUs < 1 || m.MemoryMiB < 256 || (m.Firmware != "efi" && m.Firmware != "bios") {
		return 0, fmt.Errorf("ova machine %+v: want a name, ≥ 1 CPU, ≥ 256 MiB and firmware efi or bios", m)
	}
	vsize, err := o.virtualSize(size)
	if err != nil {
		return 0, err
	}
	diskName := m.Name + "-disk1.vmdk"
	tmp, err := os.CreateTemp(tmpDir, "kiln-ova-*.vmdk")
	if err != nil {
		return 0, fmt.Errorf("creating temporary vmdk: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	n, populated, err := writeStreamVMDK(io.MultiWriter(tmp, h), src, size, diskName, o)
	if err != nil {
		return 0, err
	}
	diskSum := hex.EncodeToString(h.Sum(nil))
	var ovf bytes.Buffer
	err = ovaTemplate.Execute(&ovf, map[string]any{
		"Disk": diskName, "DiskFileSize": n, "Capacity": vsize, "Populated": populated, "M": m,
	})
	if err != nil {
		return 0, fmt.Errorf("rendering ovf: %w", err)
	}
	ovfSum := sha256.Sum256(ovf.Bytes())
	mf := fmt.Sprintf("SHA256(%s.ovf)= %x\nSHA256(%s)= %s\n", m.Name, ovfSum, diskName, diskSum)

	cw := &countWriter{w: dst}
	tw := tar.NewWriter(cw)
	add := func(name string, size int64, r io.Reader) error {
		hdr := &tar.Header{
			Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg,
			ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("writing ova member %s: %w", name, err)
		}
		if _, err := io.Copy(tw, r); err != nil {
			return fmt.Errorf("writing ova member %s: %w", name, err)
		}
		return nil
	}
	if err := add(m.Name+".ovf", int64(ovf.Len()), &ovf); err != nil {
		return 0, err
	}
	if err := add(m.Name+".mf", int64(len(mf)), bytes.NewReader([]byte(mf))); err != nil {
		return 0, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("rewinding temporary vmdk: %w", err)
	}
	if err := add(diskName, n, tmp); err != nil {
		return 0, err
	}
	if err := tw.Close(); err != nil {
		return 0, fmt.Errorf("closing ova: %w", err)
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
