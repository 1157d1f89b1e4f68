package console

// LoginInfo is what an operator needs to log in to the web UI the first time.
type LoginInfo interface {
	// AdminPassword returns the first-boot (or reset) admin password while
	// it is unchanged, "" once the operator chose another.
	AdminPassword() (string, error)
	// Fingerprint returns the SHA-256 fingerprint of the management
	// certificate as colon-separated hex, "" when there is none.
	Fingerprint() (string, error)
}

// loginLines prints the certificate fingerprint and, while it is still in
// use, the initial admin password. Errors become short notes.
func (s *session) loginLines() {
	l := s.c.Login
	if l == nil {
		return
	}
	if fp, err := l.Fingerprint(); err != nil {
		s.printf("certificate unknown (%v)\n", err)
	} else if fp != "" {
		s.printf("certificate SHA-256 %s\n", fp)
	}
	if pw, err := l.AdminPassword(); err != nil {
		s.printf("admin login unknown (%v)\n", err)
	} else if pw != "" {
		s.printf("admin login user admin, password %s (first-boot password: change it after logging in;\n"+
			"            \"kiln password reset\" in the shell makes a new one)\n", pw)
	}
}
