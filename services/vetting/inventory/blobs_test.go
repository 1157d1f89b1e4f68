package inventory

import "encoding/binary"

// Builders for the binary answers of NVMe and ATA devices, laid out as the
// NVMe 1.4 and ACS-4 specifications say; the fixture trees store them for
// the fake probers.

func nvmeIdentifyBlob(vid uint16, serial, model, fw string, capBytes uint64, namespaces uint32) []byte {
	b := make([]byte, 4096)
	binary.LittleEndian.PutUint16(b[0:], vid)
	binary.LittleEndian.PutUint16(b[2:], vid)
	pad := func(dst []byte, s string) {
		for i := range dst {
			dst[i] = ' '
		}
		copy(dst, s)
	}
	pad(b[4:24], serial)
	pad(b[24:64], model)
	pad(b[64:72], fw)
	binary.LittleEndian.PutUint64(b[280:], capBytes)
	binary.LittleEndian.PutUint32(b[516:], namespaces)
	return b
}

type nvmeHealth struct {
	critical                 byte
	tempK                    uint16
	spare, used              byte
	hours, unsafe, media, el uint64
}

func nvmeSMARTBlob(h nvmeHealth) []byte {
	b := make([]byte, 512)
	b[0] = h.critical
	binary.LittleEndian.PutUint16(b[1:], h.tempK)
	b[3], b[4], b[5] = h.spare, 10, h.used
	binary.LittleEndian.PutUint64(b[128:], h.hours)
	binary.LittleEndian.PutUint64(b[144:], h.unsafe)
	binary.LittleEndian.PutUint64(b[160:], h.media)
	binary.LittleEndian.PutUint64(b[176:], h.el)
	return b
}

type ataID struct {
	serial, fw, model string
	sectors           uint64
	rpm               uint16
	wwn               [4]uint16
	smart             bool
}

func ataIdentifyBlob(id ataID) []byte {
	b := make([]byte, 512)
	w := func(i int, v uint16) { binary.LittleEndian.PutUint16(b[2*i:], v) }
	str := func(from, to int, s string) {
		buf := make([]byte, 2*(to-from+1))
		for i := range buf {
			buf[i] = ' '
		}
		copy(buf, s)
		for i := from; i <= to; i++ {
			w(i, uint16(buf[2*(i-from)])<<8|uint16(buf[2*(i-from)+1]))
		}
	}
	w(0, 0x0040)
	str(10, 19, id.serial)
	str(23, 26, id.fw)
	str(27, 46, id.model)
	sectors28 := id.sectors
	if sectors28 > 0x0fffffff {
		sectors28 = 0x0fffffff
	}
	w(60, uint16(sectors28))
	w(61, uint16(sectors28>>16))
	var smart uint16
	if id.smart {
		smart = 1
	}
	w(82, 0x7468|smart)
	w(83, 0x7400|1<<10)
	w(85, 0x3468|smart)
	w(87, 0x4163)
	for i := 0; i < 4; i++ {
		w(100+i, uint16(id.sectors>>(16*i)))
	}
	w(106, 0x6003) // valid, multiple logical per physical: 2^3 (4K physical)
	for i, v := range id.wwn {
		w(108+i, v)
	}
	w(217, id.rpm)
	return b
}

type ataAttr struct {
	id  byte
	raw uint64
}

func ataSMARTBlob(attrs ...ataAttr) []byte {
	b := make([]byte, 512)
	binary.LittleEndian.PutUint16(b[0:], 0x0010)
	for i, a := range attrs {
		e := b[2+12*i:]
		e[0] = a.id
		binary.LittleEndian.PutUint16(e[1:], 0x0032)
		e[3], e[4] = 100, 100
		for j := 0; j < 6; j++ {
			e[5+j] = byte(a.raw >> (8 * j))
		}
	}
	return b
}
