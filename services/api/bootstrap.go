package api

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"kiln.dev/kiln/internal/atomicfile"
	"kiln.dev/kiln/services/store"
)

// AdminUser is the account made on first start and restored by a password reset.
const AdminUser = "admin"

// Files under <state>/api.
const (
	initialPasswordFile = "initial-password" // the first-boot (or reset) admin password, 0600
	resetFile           = "password-reset"   // a reset requested from the console, not yet applied
	bootstrappedFile    = "bootstrapped"     // the admin account exists; never make a new initial password
)

func apiDir(stateDir string) string { return filepath.Join(stateDir, "api") }

// InitialPasswordPath is where the first-boot admin password is kept (0600)
// until the operator changes it.
func InitialPasswordPath(stateDir string) string {
	return filepath.Join(apiDir(stateDir), initialPasswordFile)
}

// passwordAlphabet leaves out characters that look alike on a serial console.
const passwordAlphabet = "abcdefghjkmnpqrstuvwxyz23456789"

// NewPassword returns a random password of four groups of four characters
// (about 79 bits), easy to type from a console: "k7mq-2xrt-…".
func NewPassword() string {
	var b strings.Builder
	max := big.NewInt(int64(len(passwordAlphabet)))
	for i := range 16 {
		if i > 0 && i%4 == 0 {
			b.WriteByte('-')
		}
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err) // crypto/rand never fails on Linux
		}
		b.WriteByte(passwordAlphabet[n.Int64()])
	}
	return b.String()
}

// EnsureInitialPassword returns the first-boot admin password, creating it
// (random, <state>/api/initial-password, mode 0600) when the API was never
// set up; created reports that. Once the operator has changed the password it
// returns "". PID 1 calls it before starting services so it can print the
// password on the console once; the API calls it on first start.
func EnsureInitialPassword(stateDir string) (pw string, created bool, err error) {
	if pw, err := ReadInitialPassword(stateDir); err != nil || pw != "" {
		return pw, false, err
	}
	if _, err := os.Stat(filepath.Join(apiDir(stateDir), bootstrappedFile)); err == nil {
		return "", false, nil
	}
	pw = NewPassword()
	if err := writeSecret(InitialPasswordPath(stateDir), pw); err != nil {
		return "", false, err
	}
	return pw, true, nil
}

// ReadInitialPassword returns the admin password an operator should use to
// log in: a pending console reset, else the first-boot password while it is
// unchanged, else "".
func ReadInitialPassword(stateDir string) (string, error) {
	for _, name := range []string{resetFile, initialPasswordFile} {
		b, err := os.ReadFile(filepath.Join(apiDir(stateDir), name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return "", fmt.Errorf("reading the admin password: %w", err)
		}
		if pw := strings.TrimSpace(string(b)); pw != "" {
			return pw, nil
		}
	}
	return "", nil
}

// RequestPasswordReset makes a new random admin password and leaves it in
// <state>/api/password-reset for the API, which applies it at its next login
// attempt or start: the account "admin" becomes an enabled admin with that
// password and its sessions end. The recovery console's shell runs this
// ("kiln password reset"); it needs no running API.
func RequestPasswordReset(stateDir string) (string, error) {
	pw := NewPassword()
	if err := writeSecret(filepath.Join(apiDir(stateDir), resetFile), pw); err != nil {
		return "", err
	}
	return pw, nil
}

// writeSecret writes a 0600 file in a 0700 directory, atomically.
func writeSecret(path, value string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	return atomicfile.WriteFile(path, []byte(value+"\n"), 0o600)
}

// bootstrap applies a pending reset and, when no account exists, creates
// the admin account from the initial password.
func (s *Server) bootstrap(ctx context.Context) error {
	if s.o.StateDir == "" {
		return errors.New("api: Options.StateDir is empty")
	}
	if err := s.applyPendingReset(ctx); err != nil {
		return err
	}
	n, err := s.o.Store.CountUsers(ctx)
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	pw, created, err := EnsureInitialPassword(s.o.StateDir)
	if err != nil {
		return err
	}
	if pw == "" { // set up before, but the accounts are gone (database replaced)
		pw = NewPassword()
		if err := writeSecret(InitialPasswordPath(s.o.StateDir), pw); err != nil {
			return err
		}
		created = true
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), s.o.BcryptCost)
	if err != nil {
		return err
	}
	if _, err := s.o.Store.CreateUser(ctx, store.User{Name: AdminUser, Role: store.RoleAdmin, PasswordHash: string(hash)}); err != nil {
		return fmt.Errorf("creating the admin account: %w", err)
	}
	if err := writeSecret(filepath.Join(apiDir(s.o.StateDir), bootstrappedFile), "1"); err != nil {
		return err
	}
	s.log.Info("created the admin account with the initial password", "user", AdminUser, "file", InitialPasswordPath(s.o.StateDir), "generated_now", created)
	return nil
}

// applyPendingReset applies a reset requested with RequestPasswordReset.
func (s *Server) applyPendingReset(ctx context.Context) error {
	s.resetMu.Lock()
	defer s.resetMu.Unlock()
	path := filepath.Join(apiDir(s.o.StateDir), resetFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("reading the password reset: %w", err)
	}
	pw := strings.TrimSpace(string(b))
	if pw == "" {
		return os.Remove(path)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), s.o.BcryptCost)
	if err != nil {
		return err
	}
	if _, err := s.o.Store.ResetAdmin(ctx, AdminUser, string(hash)); err != nil {
		return fmt.Errorf("resetting the admin password: %w", err)
	}
	if err := os.Rename(path, InitialPasswordPath(s.o.StateDir)); err != nil {
		return fmt.Errorf("applying the password reset: %w", err)
	}
	writeSecret(filepath.Join(apiDir(s.o.StateDir), bootstrappedFile), "1")
	s.log.Warn("admin password reset from the console applied; its sessions were ended", "user", AdminUser)
	return nil
}

// initialPasswordInUse reports whether user still logs in with the
// first-boot (or reset) password.
func (s *Server) initialPasswordInUse(user string) bool {
	if user != AdminUser {
		return false
	}
	_, err := os.Stat(InitialPasswordPath(s.o.StateDir))
	return err == nil
}

// forgetInitialPassword removes the initial password once user chose another.
func (s *Server) forgetInitialPassword(user string) {
	if user != AdminUser {
		return
	}
	if err := os.Remove(InitialPasswordPath(s.o.StateDir)); err == nil {
		s.log.Info("the initial admin password was changed; removed its file")
	}
}
