package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Role is what an operator account or API token may do. Each role includes
// the ones before it: read < write < admin.
type Role string

// Roles.
const (
	RoleRead  Role = "read"  // look at everything except users, tokens and settings
	RoleWrite Role = "write" // also change hosts and leases
	RoleAdmin Role = "admin" // also manage users, tokens, settings and services
)

// Rank orders roles (read 1, write 2, admin 3); an unknown role is 0.
func (r Role) Rank() int {
	switch r {
	case RoleRead:
		return 1
	case RoleWrite:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// User is an operator account. PasswordHash is opaque to the store (the API
// writes bcrypt hashes).
type User struct {
	ID              int64
	Name            string
	Role            Role
	PasswordHash    string
	Disabled        bool
	Created         time.Time
	Updated         time.Time
	PasswordChanged time.Time
}

// Session is a logged-in browser. IDHash is the hex SHA-256 of the cookie
// value; the cookie itself is never stored.
type Session struct {
	IDHash   string
	UserID   int64
	CSRF     string // token the browser echoes in X-CSRF-Token
	Remote   string // client address at login
	Created  time.Time
	Expires  time.Time
	LastSeen time.Time
}

// APIToken is a scoped credential for scripts and the CLI. SecretHash is the
// hex SHA-256 of the secret; Prefix is its first characters, for display.
type APIToken struct {
	ID         int64
	UserID     int64
	User       string // owner's name (filled in by reads)
	Name       string
	Scope      Role
	SecretHash string
	Prefix     string
	Created    time.Time
	Expires    time.Time // zero: never
	LastUsed   time.Time // zero: never used
	Revoked    time.Time // zero: active
}

// Active reports whether t may be used at now.
func (t APIToken) Active(now time.Time) bool {
	return t.Revoked.IsZero() && (t.Expires.IsZero() || now.Before(t.Expires))
}

func (u *User) normalize() Errors {
	var es Errors
	u.Name = strings.ToLower(strings.TrimSpace(u.Name))
	if u.Name == "" {
		es.invalid("name", "missing (every account needs a name, e.g. alice)")
	} else if !validLabel(u.Name) {
		es.invalid("name", "%q is not a valid user name (use 1-63 letters, digits and '-', not starting or ending with '-')", u.Name)
	}
	if u.Role.Rank() == 0 {
		es.invalid("role", "unknown role %q (use read, write or admin)", u.Role)
	}
	if u.PasswordHash == "" {
		es.invalid("password", "missing")
	}
	return es
}

// CountUsers returns how many accounts exist.
func (s *Store) CountUsers(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting users: %w", err)
	}
	return n, nil
}

// CreateUser stores a new account and returns it with ID and times set.
func (s *Store) CreateUser(ctx context.Context, u User) (User, error) {
	if es := u.normalize(); len(es) > 0 {
		return u, es
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	u.Created, u.Updated, u.PasswordChanged = now, now, now
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM users WHERE name = ?`, u.Name).Scan(&id)
		if err == nil {
			return Errors{{Field: "name", Problem: fmt.Sprintf("user %s already exists", u.Name), Err: ErrConflict}}
		} else if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("checking user name: %w", err)
		}
		return tx.QueryRowContext(ctx, `INSERT INTO users (name, role, password_hash, disabled, created_ms, updated_ms, password_changed_ms)
			VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`, u.Name, string(u.Role), u.PasswordHash, boolInt(u.Disabled),
			ms2int(now), ms2int(now), ms2int(now)).Scan(&u.ID)
	})
	if err != nil {
		return u, fmt.Errorf("creating user %s: %w", u.Name, err)
	}
	return u, nil
}

const userColumns = `u.id, u.name, u.role, u.password_hash, u.disabled, u.created_ms, u.updated_ms, u.password_changed_ms`

func scanUser(r scanner) (User, error) {
	var u User
	var role string
	var disabled int
	var c, up, pc int64
	if err := r.Scan(&u.ID, &u.Name, &role, &u.PasswordHash, &disabled, &c, &up, &pc); err != nil {
		return User{}, err
	}
	u.Role, u.Disabled = Role(role), disabled != 0
	u.Created, u.Updated, u.PasswordChanged = int2time(c), int2time(up), int2time(pc)
	return u, nil
}

func userBy(ctx context.Context, q queryer, what, where string, arg any) (User, error) {
	u, err := scanUser(q.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users u WHERE `+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %s: %w", what, ErrNotFound)
	} else if err != nil {
		return User{}, fmt.Errorf("reading user %s: %w", what, err)
	}
	return u, nil
}

// UserByName returns the account with that name.
func (s *Store) UserByName(ctx context.Context, name string) (User, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	return userBy(ctx, s.db, name, `u.name = ?`, name)
}

// ListUsers returns every account ordered by name.
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userColumns+` FROM users u ORDER BY u.name`)
	if err != nil {
		return nil, fmt.Errorf("querying users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("reading user: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// lastAdminCheck refuses a change that would leave no enabled admin.
func lastAdminCheck(ctx context.Context, tx *sql.Tx, exceptID int64, field string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND id <> ?`, exceptID).Scan(&n); err != nil {
		return fmt.Errorf("counting admins: %w", err)
	}
	if n == 0 {
		return Errors{{Field: field, Problem: "this is the last enabled admin account: make another user admin first", Err: ErrConflict}}
	}
	return nil
}

// UpdateUser changes the role and the disabled flag of the account named
// u.Name. Disabling an account ends its sessions; the last enabled admin can
// be neither demoted nor disabled.
func (s *Store) UpdateUser(ctx context.Context, u User) (User, error) {
	u.Name = strings.ToLower(strings.TrimSpace(u.Name))
	if u.Role.Rank() == 0 {
		return u, Errors{{Field: "role", Problem: fmt.Sprintf("unknown role %q (use read, write or admin)", u.Role), Err: ErrInvalid}}
	}
	var out User
	err := s.tx(ctx, func(tx *sql.Tx) error {
		cur, err := userBy(ctx, tx, u.Name, `u.name = ?`, u.Name)
		if err != nil {
			return err
		}
		if cur.Role == RoleAdmin && !cur.Disabled && (u.Role != RoleAdmin || u.Disabled) {
			field := "role"
			if u.Disabled {
				field = "disabled"
			}
			if err := lastAdminCheck(ctx, tx, cur.ID, field); err != nil {
				return err
			}
		}
		now := s.now().UTC().Truncate(time.Millisecond)
		if _, err := tx.ExecContext(ctx, `UPDATE users SET role = ?, disabled = ?, updated_ms = ? WHERE id = ?`,
			string(u.Role), boolInt(u.Disabled), ms2int(now), cur.ID); err != nil {
			return fmt.Errorf("updating user %s: %w", u.Name, err)
		}
		if u.Disabled {
			if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ?`, cur.ID); err != nil {
				return fmt.Errorf("ending sessions of %s: %w", u.Name, err)
			}
		}
		out = cur
		out.Role, out.Disabled, out.Updated = u.Role, u.Disabled, now
		return nil
	})
	return out, err
}

// SetPassword replaces an account's password hash and ends its sessions
// except keepSession (the IDHash of the session making the change, or "").
func (s *Store) SetPassword(ctx context.Context, name, hash, keepSession string) error {
	name = strings.ToLower(strings.TrimSpace(name))
	if hash == "" {
		return Errors{{Field: "password", Problem: "missing", Err: ErrInvalid}}
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		u, err := userBy(ctx, tx, name, `u.name = ?`, name)
		if err != nil {
			return err
		}
		now := ms2int(s.now())
		if _, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = ?, password_changed_ms = ?, updated_ms = ? WHERE id = ?`,
			hash, now, now, u.ID); err != nil {
			return fmt.Errorf("setting password of %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ? AND id_hash <> ?`, u.ID, keepSession); err != nil {
			return fmt.Errorf("ending sessions of %s: %w", name, err)
		}
		return nil
	})
}

// ResetAdmin makes the account name an enabled admin with password hash,
// creating it if needed, and ends its sessions: the recovery path when the
// operator lost every admin password.
func (s *Store) ResetAdmin(ctx context.Context, name, hash string) (User, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	u := User{Name: name, Role: RoleAdmin, PasswordHash: hash}
	if es := u.normalize(); len(es) > 0 {
		return u, es
	}
	var out User
	err := s.tx(ctx, func(tx *sql.Tx) error {
		now := ms2int(s.now())
		if _, err := tx.ExecContext(ctx, `INSERT INTO users (name, role, password_hash, disabled, created_ms, updated_ms, password_changed_ms)
			VALUES (?, 'admin', ?, 0, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET role = 'admin', password_hash = excluded.password_hash, disabled = 0,
				updated_ms = excluded.updated_ms, password_changed_ms = excluded.password_changed_ms`,
			name, hash, now, now, now); err != nil {
			return fmt.Errorf("resetting %s: %w", name, err)
		}
		var err error
		if out, err = userBy(ctx, tx, name, `u.name = ?`, name); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ?`, out.ID); err != nil {
			return fmt.Errorf("ending sessions of %s: %w", name, err)
		}
		return nil
	})
	return out, err
}

// DeleteUser removes an account with its sessions and tokens. The last
// enabled admin cannot be removed.
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	name = strings.ToLower(strings.TrimSpace(name))
	return s.tx(ctx, func(tx *sql.Tx) error {
		u, err := userBy(ctx, tx, name, `u.name = ?`, name)
		if err != nil {
			return err
		}
		if u.Role == RoleAdmin && !u.Disabled {
			if err := lastAdminCheck(ctx, tx, u.ID, "name"); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, u.ID); err != nil {
			return fmt.Errorf("deleting user %s: %w", name, err)
		}
		return nil
	})
}

// CreateSession stores a new session.
func (s *Store) CreateSession(ctx context.Context, se Session) error {
	if se.IDHash == "" || se.CSRF == "" {
		return fmt.Errorf("creating session: %w: id and csrf token are required", ErrInvalid)
	}
	now := s.now()
	if se.Created.IsZero() {
		se.Created = now
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO sessions (id_hash, user_id, csrf, remote, created_ms, expires_ms, last_seen_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, se.IDHash, se.UserID, se.CSRF, se.Remote, ms2int(se.Created), ms2int(se.Expires), ms2int(se.Created)); err != nil {
		return fmt.Errorf("creating session: %w", err)
	}
	return nil
}

// SessionByHash returns an unexpired session and its (enabled) account.
// Expired sessions and sessions of disabled accounts are ErrNotFound.
func (s *Store) SessionByHash(ctx context.Context, idHash string) (Session, User, error) {
	row := s.db.QueryRowContext(ctx, `SELECT s.id_hash, s.user_id, s.csrf, s.remote, s.created_ms, s.expires_ms, s.last_seen_ms, `+userColumns+`
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ? AND s.expires_ms > ? AND u.disabled = 0`, idHash, ms2int(s.now()))
	var se Session
	var c, e, l int64
	var u User
	var role string
	var disabled int
	var uc, uu, upc int64
	err := row.Scan(&se.IDHash, &se.UserID, &se.CSRF, &se.Remote, &c, &e, &l,
		&u.ID, &u.Name, &role, &u.PasswordHash, &disabled, &uc, &uu, &upc)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, User{}, fmt.Errorf("session: %w", ErrNotFound)
	} else if err != nil {
		return Session{}, User{}, fmt.Errorf("reading session: %w", err)
	}
	se.Created, se.Expires, se.LastSeen = int2time(c), int2time(e), int2time(l)
	u.Role, u.Disabled = Role(role), disabled != 0
	u.Created, u.Updated, u.PasswordChanged = int2time(uc), int2time(uu), int2time(upc)
	return se, u, nil
}

// TouchSession records that a session was used at t.
func (s *Store) TouchSession(ctx context.Context, idHash string, t time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE sessions SET last_seen_ms = ? WHERE id_hash = ?`, ms2int(t), idHash); err != nil {
		return fmt.Errorf("touching session: %w", err)
	}
	return nil
}

// DeleteSession ends one session; ending an unknown session is not an error.
func (s *Store) DeleteSession(ctx context.Context, idHash string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, idHash); err != nil {
		return fmt.Errorf("deleting session: %w", err)
	}
	return nil
}

// PruneSessions deletes sessions that expired before t and returns how many.
func (s *Store) PruneSessions(ctx context.Context, t time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE expires_ms <= ?`, ms2int(t))
	if err != nil {
		return 0, fmt.Errorf("pruning sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// CreateToken stores a new API token for t.UserID and returns it with its ID.
func (s *Store) CreateToken(ctx context.Context, t APIToken) (APIToken, error) {
	var es Errors
	t.Name = strings.TrimSpace(t.Name)
	if t.Name == "" {
		es.invalid("name", "missing (say what the token is for, e.g. \"ci\" or \"kiln-cli@laptop\")")
	} else if len(t.Name) > 100 {
		es.invalid("name", "longer than 100 characters")
	}
	if t.Scope.Rank() == 0 {
		es.invalid("scope", "unknown scope %q (use read, write or admin)", t.Scope)
	}
	if t.SecretHash == "" {
		es.invalid("secret", "missing")
	}
	if len(es) > 0 {
		return t, es
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	t.Created = now
	err := s.tx(ctx, func(tx *sql.Tx) error {
		u, err := userBy(ctx, tx, fmt.Sprintf("id %d", t.UserID), `u.id = ?`, t.UserID)
		if err != nil {
			return err
		}
		t.User = u.Name
		return tx.QueryRowContext(ctx, `INSERT INTO api_tokens (user_id, name, scope, secret_hash, prefix, created_ms, expires_ms)
			VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`, t.UserID, t.Name, string(t.Scope), t.SecretHash, t.Prefix,
			ms2int(now), ms2int(t.Expires)).Scan(&t.ID)
	})
	if err != nil {
		return t, fmt.Errorf("creating token: %w", err)
	}
	return t, nil
}

const tokenColumns = `t.id, t.user_id, u.name, t.name, t.scope, t.secret_hash, t.prefix, t.created_ms, t.expires_ms, t.last_used_ms, t.revoked_ms`

func scanToken(r scanner) (APIToken, error) {
	var t APIToken
	var scope string
	var c, e, l, rv int64
	if err := r.Scan(&t.ID, &t.UserID, &t.User, &t.Name, &scope, &t.SecretHash, &t.Prefix, &c, &e, &l, &rv); err != nil {
		return APIToken{}, err
	}
	t.Scope = Role(scope)
	t.Created, t.Expires, t.LastUsed, t.Revoked = int2time(c), int2time(e), int2time(l), int2time(rv)
	return t, nil
}

// TokenByHash returns the token with that secret hash and its owner, active
// or not (the caller checks Active and User.Disabled).
func (s *Store) TokenByHash(ctx context.Context, secretHash string) (APIToken, User, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM api_tokens t JOIN users u ON u.id = t.user_id
		WHERE t.secret_hash = ?`, secretHash))
	if errors.Is(err, sql.ErrNoRows) {
		return APIToken{}, User{}, fmt.Errorf("token: %w", ErrNotFound)
	} else if err != nil {
		return APIToken{}, User{}, fmt.Errorf("reading token: %w", err)
	}
	u, err := userBy(ctx, s.db, t.User, `u.id = ?`, t.UserID)
	return t, u, err
}

// TokenByID returns one token.
func (s *Store) TokenByID(ctx context.Context, id int64) (APIToken, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM api_tokens t JOIN users u ON u.id = t.user_id
		WHERE t.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return APIToken{}, fmt.Errorf("token %d: %w", id, ErrNotFound)
	} else if err != nil {
		return APIToken{}, fmt.Errorf("reading token %d: %w", id, err)
	}
	return t, nil
}

// ListTokens returns the tokens of one account (userID > 0) or of all, newest first.
func (s *Store) ListTokens(ctx context.Context, userID int64) ([]APIToken, error) {
	q := `SELECT ` + tokenColumns + ` FROM api_tokens t JOIN users u ON u.id = t.user_id`
	var args []any
	if userID > 0 {
		q += ` WHERE t.user_id = ?`
		args = append(args, userID)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY t.id DESC`, args...)
	if err != nil {
		return nil, fmt.Errorf("querying tokens: %w", err)
	}
	defer rows.Close()
	var out []APIToken
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("reading token: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken marks a token revoked at t; revoking twice keeps the first time.
func (s *Store) RevokeToken(ctx context.Context, id int64, t time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE api_tokens SET revoked_ms = CASE WHEN revoked_ms = 0 THEN ? ELSE revoked_ms END WHERE id = ?`, ms2int(t), id)
		if err != nil {
			return fmt.Errorf("revoking token %d: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("token %d: %w", id, ErrNotFound)
		}
		return nil
	})
}

// TouchToken records that a token was used at t.
func (s *Store) TouchToken(ctx context.Context, id int64, t time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE api_tokens SET last_used_ms = ? WHERE id = ?`, ms2int(t), id); err != nil {
		return fmt.Errorf("touching token: %w", err)
	}
	return nil
}

// Settings returns every stored setting.
func (s *Store) Settings(ctx context.Context) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT key, value FROM settings`)
	if err != nil {
		return nil, fmt.Errorf("querying settings: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("reading setting: %w", err)
		}
		out[k] = v
	}
	return out, rows.Err()
}

// PutSettings stores every key of kv in one transaction; an empty value
// deletes the key (back to its default). The caller validates keys and values.
func (s *Store) PutSettings(ctx context.Context, kv map[string]string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		now := ms2int(s.now())
		for k, v := range kv {
			var err error
			if v == "" {
				_, err = tx.ExecContext(ctx, `DELETE FROM settings WHERE key = ?`, k)
			} else {
				_, err = tx.ExecContext(ctx, `INSERT INTO settings (key, value, updated_ms) VALUES (?, ?, ?)
					ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms`, k, v, now)
			}
			if err != nil {
				return fmt.Errorf("storing setting %s: %w", k, err)
			}
		}
		return nil
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// SettingOnce stores value under key unless the key is set, and returns
// the stored value: the first writer of several processes wins, so a
// value fixed once (like the iSCSI naming date) never changes.
func (s *Store) SettingOnce(ctx context.Context, key, value string) (string, error) {
	var got string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value, updated_ms) VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING`,
			key, value, ms2int(s.now())); err != nil {
			return fmt.Errorf("storing setting %s: %w", key, err)
		}
		return tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&got)
	})
	return got, err
}
