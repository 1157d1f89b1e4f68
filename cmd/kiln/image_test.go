package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunImageUsage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		wantUsage bool
		wantText  string
	}{
		{"no subcommand", nil, true, "no subcommand"},
		{"unknown subcommand", []string{"bake"}, true, "unknown subcommand"},
		{"bad flag", []string{"build", "--nope"}, true, "image build"},
		{"stray argument", []string{"build", "extra"}, true, "unexpected argument"},
		{"missing lock", []string{"build", "--lock", filepath.Join(t.TempDir(), "none.lock")}, false, "make lock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := runImage(context.Background(), tc.args, stdio{out: &out, err: &errb})
			if err == nil {
				t.Fatalf("runImage(%q) = nil, want error", tc.args)
			}
			if got := errors.Is(err, errUsage); got != tc.wantUsage {
				t.Errorf("runImage(%q) usage error = %v, want %v (%v)", tc.args, got, tc.wantUsage, err)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("runImage(%q) = %v, want it to mention %q", tc.args, err, tc.wantText)
			}
		})
	}
}

func TestRunImageBuildValidates(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	err := runImage(context.Background(), []string{"build", "--lock", "../../image/packages.lock",
		"--kiln", filepath.Join(dir, "kiln"), "--stage1", filepath.Join(dir, "stage1"), "--busybox", "", "--generation", "0"},
		stdio{out: &out, err: &errb})
	for _, want := range []string{"--kiln", "--stage1", "--generation"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("runImage(build with bad flags) = %v, want it to name %s", err, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "512M": 512 << 20, "32G": 32 << 30, "2T": 2 << 40, "0": -1, "-1G": -1, "G": -1, "1.5G": -1, "12X": -1} {
		got, err := parseSize(in)
		if want < 0 {
			if err == nil {
				t.Errorf("parseSize(%q) = %d, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v, want %d", in, got, err, want)
		}
	}
}

func TestRunImageConvertUsage(t *testing.T) {
	for _, args := range [][]string{{"convert"}, {"convert", "--format", "raw", "a", "b"}, {"convert", "--format", "vmdk", "--size", "x", "a", "b"}} {
		var out, errb bytes.Buffer
		if err := runImage(context.Background(), args, stdio{out: &out, err: &errb}); !errors.Is(err, errUsage) {
			t.Errorf("runImage(%q) = %v, want a usage error", args, err)
		}
	}
}
