package config

import (
	"fmt"
	"strconv"
	"strings"
)

// ISCSIService configures the iscsi service's volumes.
type ISCSIService struct {
	// Reserve is the part of the data partition volumes can never promise
	// away (the database, logs and artifacts live there too): a whole
	// percentage of the partition ("10%") or a size ("4G", "512M"); empty
	// means DefaultISCSIReserve. Never less than MinISCSIReserve.
	Reserve string `yaml:"reserve"`
}

// DefaultISCSIReserve is the reserve when provisioning.iscsi.reserve is unset.
const DefaultISCSIReserve = "10%"

// MinISCSIReserve is the least reserve: what the appliance needs to keep
// its database and logs writable.
const MinISCSIReserve = 64 << 20

// ReserveBytes returns the reserve of a data partition of total bytes.
// A reserve that does not parse (a config Validate refused) counts as the
// default: the quota never gets looser than intended.
func (s ISCSIService) ReserveBytes(total int64) int64 {
	pct, size, err := parseReserve(s.Reserve)
	if err != nil {
		pct, size, _ = parseReserve(DefaultISCSIReserve)
	}
	if pct > 0 {
		size = total / 100 * int64(pct)
	}
	return max(size, MinISCSIReserve)
}

func (s ISCSIService) validate(add func(field, problem, fix string)) {
	if _, _, err := parseReserve(s.Reserve); err != nil {
		add("provisioning.iscsi.reserve", fmt.Sprintf("%q: %v", s.Reserve, err),
			"use a whole percentage of the data partition from 1% to 90% (e.g. 10%) or a size of at least 64M (e.g. 4G)")
	}
}

// parseReserve reads "N%" (pct 1-90) or a size with an optional M, G or T
// suffix (at least MinISCSIReserve); "" is the default.
func parseReserve(v string) (pct int, size int64, err error) {
	v = strings.TrimSpace(v)
	if v == "" {
		v = DefaultISCSIReserve
	}
	if p, ok := strings.CutSuffix(v, "%"); ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 90 {
			return 0, 0, fmt.Errorf("a percentage must be a whole number from 1 to 90")
		}
		return n, 0, nil
	}
	n, err := parseBytes(v)
	if err != nil {
		return 0, 0, fmt.Errorf("not a percentage or a size")
	}
	if n < MinISCSIReserve {
		return 0, 0, fmt.Errorf("less than the 64 MiB the appliance needs for its database and logs")
	}
	return 0, n, nil
}

// parseBytes reads a positive byte count with an optional M, G or T suffix
// (binary units: 16G is 16 GiB).
func parseBytes(v string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"M": 1 << 20, "G": 1 << 30, "T": 1 << 40} {
		if n, ok := strings.CutSuffix(v, suffix); ok {
			v, mult = n, m
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size", v)
	}
	return n * mult, nil
}
