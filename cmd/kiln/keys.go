package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"kiln.dev/kiln/ota/bundle"
)

const keysUsage = `usage: kiln keys gen --out DIR [--name NAME]   make an ed25519 update signing key:
                                              DIR/NAME.key (private, mode 0600) and DIR/NAME.pub
       kiln keys id FILE                      print the id of a .pub or .key file`

// runKeys manages OTA signing keys.
func runKeys(ctx context.Context, args []string, s stdio) error {
	if len(args) == 0 {
		fmt.Fprintln(s.err, keysUsage)
		return fmt.Errorf("keys: no subcommand: %w", errUsage)
	}
	switch args[0] {
	case "gen":
		return runKeysGen(args[1:], s)
	case "id":
		return runKeysID(args[1:], s)
	case "-h", "--help", "help":
		fmt.Fprintln(s.out, keysUsage)
		return nil
	}
	fmt.Fprintln(s.err, keysUsage)
	return fmt.Errorf("keys: unknown subcommand %q: %w", args[0], errUsage)
}

func runKeysGen(args []string, s stdio) error {
	fs := flag.NewFlagSet("keys gen", flag.ContinueOnError)
	fs.SetOutput(s.err)
	out := fs.String("out", ".", "directory to write NAME.key and NAME.pub into")
	name := fs.String("name", "ota", "base name of the key files")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("keys gen: %v: %w", err, errUsage)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("keys gen: unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if *name == "" || filepath.Base(*name) != *name {
		return fmt.Errorf("keys gen: --name %q must be a plain file name: %w", *name, errUsage)
	}
	keyPath := filepath.Join(*out, *name+".key")
	pubPath := filepath.Join(*out, *name+".pub")
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("keys gen: %s exists; refusing to overwrite a key (move it away or pick another --name)", p)
		}
	}
	priv, err := bundle.GenerateKey(nil)
	if err != nil {
		return err
	}
	privPEM, err := bundle.MarshalPrivateKey(priv)
	if err != nil {
		return err
	}
	pub := priv.Public().(ed25519.PublicKey)
	pubPEM, err := bundle.MarshalPublicKey(pub)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("keys gen: %w", err)
	}
	// O_EXCL: never replace a key that appeared meanwhile.
	f, err := os.OpenFile(keyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keys gen: %w", err)
	}
	_, werr := f.Write(privPEM)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		os.Remove(keyPath)
		return fmt.Errorf("keys gen: writing %s: %w", keyPath, err)
	}
	if err := os.WriteFile(pubPath, pubPEM, 0o644); err != nil {
		return fmt.Errorf("keys gen: writing %s: %w", pubPath, err)
	}
	fmt.Fprintf(s.out, "key %s\n  private: %s (keep it secret; sign bundles with kiln update build --key)\n  public:  %s (bake it into images with kiln image build --ota-key)\n",
		bundle.KeyID(pub), keyPath, pubPath)
	return nil
}

func runKeysID(args []string, s stdio) error {
	if len(args) != 1 {
		return fmt.Errorf("keys id: want one .pub or .key file: %w", errUsage)
	}
	b, err := os.ReadFile(args[0])
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keys id: %w", err)
	} else if err != nil {
		return err
	}
	if pub, err := bundle.ParsePublicKey(b); err == nil {
		fmt.Fprintln(s.out, bundle.KeyID(pub))
		return nil
	}
	priv, err := bundle.ParsePrivateKey(b)
	if err != nil {
		return fmt.Errorf("keys id: %s is neither a public nor a private kiln key", args[0])
	}
	fmt.Fprintln(s.out, bundle.KeyID(priv.Public().(ed25519.PublicKey)))
	return nil
}
