package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kiln.dev/kiln/ota/pull"
)

// StatusFileName is the scheduled backups' last result, in their directory.
const StatusFileName = "status.json"

// Status is what the last scheduled backup did (doctor and the API show it).
type Status struct {
	Time     time.Time     `json:"time"`
	File     string        `json:"file,omitempty"`
	Size     int64         `json:"size,omitempty"`
	Duration time.Duration `json:"duration_ns"`
	Error    string        `json:"error,omitempty"`
	// Pushed is the URL the file went to; PushError why it did not.
	Pushed    string    `json:"pushed,omitempty"`
	PushError string    `json:"push_error,omitempty"`
	Removed   []string  `json:"removed,omitempty"`
	Next      time.Time `json:"next,omitzero"`
}

// ReadStatus returns the last scheduled backup's status in dir; none yet
// is fs.ErrNotExist.
func ReadStatus(dir string) (Status, error) {
	b, err := os.ReadFile(filepath.Join(dir, StatusFileName))
	if err != nil {
		return Status{}, err
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return Status{}, fmt.Errorf("%s: %w", filepath.Join(dir, StatusFileName), err)
	}
	return st, nil
}

// Schedule writes a backup every Every (at a fixed offset from ID, so that
// a fleet does not back up at once) into Dir, keeps the newest Keep, and
// PUTs each to PushURL when set.
type Schedule struct {
	Every   time.Duration
	Keep    int
	Key     Key
	Dir     string
	ID      string
	PushURL string
	// Source returns what to back up at the given time.
	Source func(now time.Time) Source
	Client *http.Client
	Log    *slog.Logger
	Now    func() time.Time
}

// Run backs up on schedule until ctx ends.
func (s *Schedule) Run(ctx context.Context) {
	off := pull.Offset("backup/"+s.ID, s.Every)
	for {
		next := pull.Next(s.Now(), s.Every, off)
		s.Log.Info("next scheduled backup", "at", next.UTC().Format(time.RFC3339))
		t := time.NewTimer(next.Sub(s.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		st := s.Once(ctx)
		st.Next = pull.Next(s.Now(), s.Every, off)
		if err := writeStatus(s.Dir, st); err != nil {
			s.Log.Warn("recording the scheduled backup's status", "err", err)
		}
	}
}

// Once writes one backup now and returns (and records) what happened.
func (s *Schedule) Once(ctx context.Context) Status {
	start := s.Now()
	st := Status{Time: start.UTC()}
	defer func() {
		if err := writeStatus(s.Dir, st); err != nil {
			s.Log.Warn("recording the scheduled backup's status", "err", err)
		}
	}()
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		st.Error = err.Error()
		return st
	}
	src := s.Source(start)
	path := filepath.Join(s.Dir, FileName(src.Hostname, start))
	_, err := WriteFile(ctx, path, src, s.Key)
	st.Duration = s.Now().Sub(start)
	if err != nil {
		st.Error = err.Error()
		s.Log.Error("scheduled backup failed", "err", err)
		return st
	}
	st.File = filepath.Base(path)
	if info, err := os.Stat(path); err == nil {
		st.Size = info.Size()
	}
	s.Log.Info("scheduled backup written", "file", path, "bytes", st.Size, "took", st.Duration.Round(time.Millisecond))
	if st.Removed, err = Prune(s.Dir, s.Keep); err != nil {
		s.Log.Warn("removing old backups", "err", err)
	}
	if s.PushURL != "" {
		target, err := s.push(ctx, path)
		if err != nil {
			st.PushError = err.Error()
			s.Log.Error("pushing the backup failed; it stays in the backup directory", "file", path, "err", err)
		} else {
			st.Pushed = target
			s.Log.Info("backup pushed", "to", target)
		}
	}
	return st
}

// push PUTs the file at path to the push URL and returns where (without
// credentials).
func (s *Schedule) push(ctx context.Context, path string) (string, error) {
	u, err := url.Parse(s.PushURL)
	if err != nil {
		return "", err
	}
	if strings.HasSuffix(u.Path, "/") {
		u = u.JoinPath(filepath.Base(path))
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), f)
	if err != nil {
		return "", err
	}
	req.ContentLength = info.Size()
	req.Header.Set("Content-Type", "application/octet-stream")
	c := s.Client
	if c == nil {
		c = &http.Client{Timeout: time.Hour}
	}
	resp, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text would repeat the URL, credentials and all
		}
		return "", fmt.Errorf("PUT %s: %w", u.Redacted(), err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("PUT %s: %s", u.Redacted(), resp.Status)
	}
	return u.Redacted(), nil
}

func writeStatus(dir string, st Status) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+StatusFileName+"-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, StatusFileName))
}
