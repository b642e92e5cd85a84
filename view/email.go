package view

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
)

// MaxEmailLength is the longest address a client may give (RFC 5321's
// limit on a forward path, less the angle brackets).
const MaxEmailLength = 254

// ValidEmail checks an address a client gave for email delivery: a bare
// address ("me@example.com"), with no display name, angle brackets,
// comments, spaces or control characters, at most MaxEmailLength long. The
// API calls it at submit, so nothing that could break a mail header ever
// reaches the notifier. The error is a sentence for the client.
func ValidEmail(addr string) error {
	if addr == "" {
		return errors.New("the email address is empty")
	}
	if len(addr) > MaxEmailLength {
		return fmt.Errorf("the email address is %d characters long; the limit is %d", len(addr), MaxEmailLength)
	}
	for _, r := range addr {
		if r < 0x20 || r == 0x7f || r == ' ' {
			return errors.New("the email address must not contain spaces or control characters")
		}
	}
	parsed, err := mail.ParseAddress(addr)
	if err != nil || parsed.Name != "" || parsed.Address != addr {
		return errors.New("the email address must be a plain address such as me@example.com, without a name or angle brackets")
	}
	local, domain, ok := strings.Cut(addr, "@")
	if !ok || local == "" || domain == "" || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return errors.New("the email address must be a plain address such as me@example.com")
	}
	return nil
}
