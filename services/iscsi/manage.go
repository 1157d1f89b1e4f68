package iscsi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
)

// ErrConfirm: a deletion's typed confirmation does not match.
var ErrConfirm = errors.New("confirmation does not match")

// NamingDateKey is the setting holding the naming authority's date
// (yyyy-mm), fixed the first time a name is needed.
const NamingDateKey = "iscsi.naming_date"

// NamesFor returns the site's iSCSI names: the reversed domain and the
// date stored under NamingDateKey, set to now's month the first time so
// names never change afterwards.
func NamesFor(ctx context.Context, st *store.Store, domain string, now time.Time) (Names, error) {
	if domain == "" {
		return Names{}, fmt.Errorf("%w: set provisioning.domain (e.g. hall.example): it is the naming authority of kiln's iSCSI names", ErrBadIQN)
	}
	date, err := st.SettingOnce(ctx, NamingDateKey, now.UTC().Format("2006-01"))
	if err != nil {
		return Names{}, err
	}
	return NewNames(domain, date)
}

// OpenManager returns the Manager of the appliance whose state directory
// is stateDir: volumes below <state>/iscsi/volumes, the sealing key at
// <state>/iscsi/chap.key, names from domain.
func OpenManager(ctx context.Context, st *store.Store, stateDir, domain string, now time.Time) (*Manager, error) {
	names, err := NamesFor(ctx, st, domain, now)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(stateDir, "iscsi")
	sealer, err := OpenSealer(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, err
	}
	return &Manager{Store: st, Files: Files{Dir: filepath.Join(dir, "volumes")}, Sealer: sealer, Names: names}, nil
}

// Manager changes volumes and initiators, keeping the database, the
// volume files and the quota in step. The iscsi service notices the
// database change and applies it to LIO.
type Manager struct {
	Store  *store.Store
	Files  Files
	Sealer *Sealer
	Names  Names
	// Reserve is provisioning.iscsi: the part of the data partition the
	// quota keeps free (the zero value: the default, 10 %).
	Reserve config.ISCSIService
	// mu serializes quota checks with the file changes they allow.
	mu sync.Mutex
}

// Source is what a new volume starts with: nothing (zeros), a copy of
// another volume ("host/name", or "name" for a golden one), or a raw disk
// image read from Image (named ImageName in the volume's record).
type Source struct {
	Volume    string
	Image     io.Reader
	ImageName string
}

// VolumeInfo is a volume with where it is exported and what it takes.
type VolumeInfo struct {
	store.Volume
	Allocated int64  // bytes on the data partition
	Target    string // the host's target IQN ("" for golden volumes)
}

// Label names a volume: "host/name", or "name" for a golden one.
func Label(host, name string) string {
	if host == "" {
		return name
	}
	return host + "/" + name
}

// SplitLabel parses Label's form.
func SplitLabel(label string) (host, name string) {
	if h, n, ok := strings.Cut(label, "/"); ok {
		return h, n
	}
	return "", label
}

// CreateVolume makes host's volume name (host "": golden) of size bytes from src.
func (m *Manager) CreateVolume(ctx context.Context, host, name string, size int64, src Source) (store.Volume, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := store.Volume{Host: strings.ToLower(host), Name: strings.ToLower(name), Size: size}
	var from io.Reader
	switch {
	case src.Volume != "" && src.Image != nil:
		return v, fmt.Errorf("%w: clone from a volume or an image, not both", store.ErrInvalid)
	case src.Volume != "":
		sh, sn := SplitLabel(src.Volume)
		sv, err := m.Store.VolumeByName(ctx, sh, sn)
		if err != nil {
			return v, fmt.Errorf("source volume: %w", err)
		}
		if v.Size == 0 {
			v.Size = sv.Size
		}
		if v.Size < sv.Size {
			return v, fmt.Errorf("%w: size %s is smaller than the source volume %s's %s", store.ErrInvalid, Bytes(v.Size), src.Volume, Bytes(sv.Size))
		}
		f, err := os.Open(m.Files.Path(sv.Host, sv.Name))
		if err != nil {
			return v, fmt.Errorf("opening source volume %s: %w", src.Volume, err)
		}
		defer f.Close()
		from, v.Source = f, "volume:"+Label(sv.Host, sv.Name)
	case src.Image != nil:
		from, v.Source = src.Image, "image:"+src.ImageName
	}
	if err := m.Store.CheckVolume(ctx, v); err != nil {
		return v, err
	}
	if err := m.checkQuota(ctx, v.Size); err != nil {
		return v, err
	}
	path := m.Files.Path(v.Host, v.Name)
	if err := m.Files.Create(ctx, path, v.Size, from); err != nil {
		return v, err
	}
	created, err := m.Store.CreateVolume(ctx, v)
	if err != nil {
		m.Files.Remove(path)
		return v, err
	}
	return created, nil
}

// GrowVolume grows a volume to size; the host sees it after a rescan.
func (m *Manager) GrowVolume(ctx context.Context, host, name string, size int64) (store.Volume, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.Store.VolumeByName(ctx, host, name)
	if err != nil {
		return v, err
	}
	if size < v.Size {
		return v, fmt.Errorf("%w: size: %s is smaller than %s's %s: volumes only grow", store.ErrInvalid, Bytes(size), Label(host, name), Bytes(v.Size))
	}
	if err := m.checkQuota(ctx, size-v.Size); err != nil {
		return v, err
	}
	if err := m.Files.Grow(m.Files.Path(v.Host, v.Name), size); err != nil {
		return v, err
	}
	return m.Store.ResizeVolume(ctx, v.Host, v.Name, size)
}

// DeleteVolume removes a volume and its data; confirm must repeat its
// label ("host/name"), so a slip of the keyboard deletes nothing.
func (m *Manager) DeleteVolume(ctx context.Context, host, name, confirm string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	label := Label(strings.ToLower(host), strings.ToLower(name))
	if confirm != label {
		return fmt.Errorf("%w: deleting volume %s destroys its data: confirm with exactly %q", ErrConfirm, label, label)
	}
	v, err := m.Store.VolumeByName(ctx, host, name)
	if err != nil {
		return err
	}
	if err := m.Store.DeleteVolume(ctx, v.Host, v.Name); err != nil {
		return err
	}
	// The record is gone first: the service unexports the LUN; LIO keeps
	// the open file until then, and its blocks are freed after.
	return m.Files.Remove(m.Files.Path(v.Host, v.Name))
}

// Volumes lists every volume with its allocated size.
func (m *Manager) Volumes(ctx context.Context) ([]VolumeInfo, error) {
	vs, err := m.Store.Volumes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]VolumeInfo, 0, len(vs))
	for _, v := range vs {
		a, err := Allocated(m.Files.Path(v.Host, v.Name))
		if err != nil {
			return nil, err
		}
		info := VolumeInfo{Volume: v, Allocated: a}
		if v.Host != "" {
			info.Target = m.Names.Target(v.Host)
		}
		out = append(out, info)
	}
	return out, nil
}

func (m *Manager) checkQuota(ctx context.Context, add int64) error {
	vs, err := m.Volumes(ctx)
	if err != nil {
		return err
	}
	space, err := m.Space()
	if err != nil {
		return err
	}
	us := make([]Usage, len(vs))
	for i, v := range vs {
		us[i] = Usage{Logical: v.Size, Allocated: v.Allocated}
	}
	return CheckQuota(space, us, add)
}

// Space returns the data partition's space as the quota sees it.
func (m *Manager) Space() (Space, error) {
	if err := os.MkdirAll(m.Files.Dir, 0o700); err != nil {
		return Space{}, fmt.Errorf("creating volume directory: %w", err)
	}
	return StatSpace(m.Files.Dir, m.Reserve)
}

// Credentials are an initiator's CHAP credentials in clear text, shown
// to the operator once when they are made.
type Credentials struct {
	Host         string `json:"host"`
	IQN          string `json:"initiator_iqn"`
	Target       string `json:"target_iqn"`
	User         string `json:"chap_user"`
	Secret       string `json:"chap_secret"`
	MutualUser   string `json:"mutual_user,omitempty"`
	MutualSecret string `json:"mutual_secret,omitempty"`
}

// SetInitiator (re)makes host's initiator record with new CHAP secrets
// (and mutual ones when mutual is set) and returns them in clear text; only
// their sealed form is stored. iqn "" keeps the stored IQN, or takes
// Names.Initiator(host) for a new record.
func (m *Manager) SetInitiator(ctx context.Context, host, iqn string, mutual bool) (Credentials, error) {
	host = strings.ToLower(host)
	if iqn == "" {
		if old, err := m.Store.InitiatorOf(ctx, host); err == nil {
			iqn = old.IQN
		} else {
			iqn = m.Names.Initiator(host)
		}
	}
	if err := CheckIQN(iqn); err != nil {
		return Credentials{}, &store.FieldError{Field: "iqn", Problem: err.Error() + " (e.g. " + m.Names.Initiator(host) + ")", Err: store.ErrInvalid}
	}
	c := Credentials{Host: host, IQN: iqn, Target: m.Names.Target(host), User: host, Secret: NewSecret()}
	rec := store.Initiator{Host: host, IQN: iqn, CHAPUser: c.User, CHAPSealed: m.Sealer.Seal(c.Secret, sealContext(host, "chap"))}
	if mutual {
		c.MutualUser, c.MutualSecret = "kiln", NewSecret()
		rec.MutualUser, rec.MutualSealed = c.MutualUser, m.Sealer.Seal(c.MutualSecret, sealContext(host, "mutual"))
	}
	if _, err := m.Store.PutInitiator(ctx, rec); err != nil {
		return Credentials{}, err
	}
	return c, nil
}

// sealContext binds a sealed secret to its host and role.
func sealContext(host, role string) string { return "iscsi/" + host + "/" + role }

// Unseal opens a stored initiator's secrets.
func (s *Sealer) Unseal(in store.Initiator) (CHAP, error) {
	c := CHAP{UserID: in.CHAPUser, MutualUserID: in.MutualUser}
	var err error
	if c.Password, err = s.Open(in.CHAPSealed, sealContext(in.Host, "chap")); err != nil {
		return CHAP{}, fmt.Errorf("host %s: %w", in.Host, err)
	}
	if in.MutualSealed != "" {
		if c.MutualPassword, err = s.Open(in.MutualSealed, sealContext(in.Host, "mutual")); err != nil {
			return CHAP{}, fmt.Errorf("host %s: mutual: %w", in.Host, err)
		}
	}
	return c, nil
}
