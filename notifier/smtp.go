package notifier

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// SMTPServer is THUMBNAILED_SMTP_URL, read.
type SMTPServer struct {
	Host     string
	Port     int
	Security string // "starttls", "tls" or "none"
	Username string
	Password string
}

// ParseSMTPURL reads smtp://user:pass@host:port?tls=starttls|tls|none.
// tls defaults to starttls (mandatory: a server that does not offer it is
// not used); the port defaults to 587 for starttls, 465 for tls and 25 for
// none. smtps:// means tls=tls. Errors never repeat the URL, which may hold
// a password.
func ParseSMTPURL(raw string) (SMTPServer, error) {
	const shape = "smtp://user:password@host:port?tls=starttls|tls|none"
	u, err := url.Parse(raw)
	if err != nil {
		return SMTPServer{}, fmt.Errorf("THUMBNAILED_SMTP_URL is not a URL such as %s", shape)
	}
	var s SMTPServer
	switch strings.ToLower(u.Scheme) {
	case "smtp":
		s.Security = "starttls"
	case "smtps":
		s.Security = "tls"
	default:
		return SMTPServer{}, fmt.Errorf("THUMBNAILED_SMTP_URL must start with smtp:// (%s)", shape)
	}
	s.Host = u.Hostname()
	if s.Host == "" {
		return SMTPServer{}, fmt.Errorf("THUMBNAILED_SMTP_URL has no host (%s)", shape)
	}
	if u.Path != "" && u.Path != "/" || u.Fragment != "" {
		return SMTPServer{}, fmt.Errorf("THUMBNAILED_SMTP_URL must have no path (%s)", shape)
	}
	q := u.Query()
	for k := range q {
		if k != "tls" {
			return SMTPServer{}, fmt.Errorf("THUMBNAILED_SMTP_URL has an unknown parameter %q; the only one is tls=starttls|tls|none", k)
		}
	}
	if q.Has("tls") {
		switch v := strings.ToLower(q.Get("tls")); v {
		case "starttls", "tls", "none":
			s.Security = v
		default:
			return SMTPServer{}, fmt.Errorf("THUMBNAILED_SMTP_URL has tls=%q; use tls=starttls, tls=tls or tls=none", q.Get("tls"))
		}
	}
	switch s.Security {
	case "starttls":
		s.Port = 587
	case "tls":
		s.Port = 465
	case "none":
		s.Port = 25
	}
	if p := u.Port(); p != "" {
		port, err := strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return SMTPServer{}, fmt.Errorf("THUMBNAILED_SMTP_URL has the port %q; use 1 to 65535", p)
		}
		s.Port = port
	}
	if u.User != nil {
		s.Username = u.User.Username()
		s.Password, _ = u.User.Password()
		if s.Username == "" {
			return SMTPServer{}, fmt.Errorf("THUMBNAILED_SMTP_URL has a password but no user name (%s)", shape)
		}
	}
	return s, nil
}
