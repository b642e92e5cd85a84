// Package keys holds the API keys: from THUMBNAILED_API_KEYS (keys in
// clear, unnamed) and THUMBNAILED_API_KEYS_FILE (JSON, with names, digests
// and webhook secrets). Keys are kept as SHA-256 digests only and compared
// in constant time; the file can be read again (SIGHUP) without a restart.
package keys

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync/atomic"

	"github.com/thumbnailed/thumbnailed/webhook"
)

// Key is one API key, without the key itself.
type Key struct {
	Name   string
	digest [sha256.Size]byte
	// WebhookSecrets sign the callbacks of this key's jobs: every one of
	// them, so a receiver holding either verifies during a rotation.
	WebhookSecrets []string
}

// Owner is the digest that marks the key's jobs (the first half of the
// key's SHA-256, hex): another key sees them as not found.
func (k Key) Owner() string { return hex.EncodeToString(k.digest[:16]) }

// Set is the keys in force.
type Set struct{ keys []Key }

// MinKeyLength is the shortest key accepted in clear.
const MinKeyLength = 16

// entry is one key of the keys file.
type entry struct {
	Name           string   `json:"name"`
	KeySHA256      string   `json:"key_sha256"`
	Key            string   `json:"key"`
	WebhookSecrets []string `json:"webhook_secrets"`
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Parse builds the set from keys given in clear (THUMBNAILED_API_KEYS,
// named "key-1", "key-2", …) and the keys file's content (nil when there is
// none). Every problem is reported at once; no message repeats a key or a
// secret.
func Parse(inline []string, file []byte) (*Set, error) {
	var errs []error
	s := &Set{}
	for i, k := range inline {
		if len(k) < MinKeyLength {
			errs = append(errs, fmt.Errorf("THUMBNAILED_API_KEYS: every key must be at least %d characters (key %d is %d)", MinKeyLength, i+1, len(k)))
			continue
		}
		s.keys = append(s.keys, Key{Name: fmt.Sprintf("key-%d", i+1), digest: sha256.Sum256([]byte(k))})
	}
	if file != nil {
		var entries []entry
		dec := json.NewDecoder(strings.NewReader(string(file)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&entries); err != nil {
			errs = append(errs, fmt.Errorf("THUMBNAILED_API_KEYS_FILE: not a JSON list of {name, key_sha256 or key, webhook_secrets}: %v", jsonReason(err)))
		}
		for i, e := range entries {
			k, err := e.key()
			if err != nil {
				errs = append(errs, fmt.Errorf("THUMBNAILED_API_KEYS_FILE: entry %d: %w", i+1, err))
				continue
			}
			s.keys = append(s.keys, k)
		}
	}
	// With a keys file every call needs a key, and no key at all means an
	// open API: a file emptied of its keys would open the service (a mail
	// relay, with SMTP set) on a reload. A file that leaves no key is a bad
	// file: refused on SIGHUP (the keys in force stay), and at start.
	if file != nil && len(errs) == 0 && len(s.keys) == 0 {
		errs = append(errs, errors.New("THUMBNAILED_API_KEYS_FILE lists no key: with a keys file every call needs a key (to run the API open, set neither THUMBNAILED_API_KEYS nor THUMBNAILED_API_KEYS_FILE)"))
	}
	seenName, seenKey := map[string]bool{}, map[[sha256.Size]byte]bool{}
	for _, k := range s.keys {
		if seenName[k.Name] {
			errs = append(errs, fmt.Errorf("THUMBNAILED_API_KEYS_FILE: the name %q is used twice", k.Name))
		}
		if seenKey[k.digest] {
			errs = append(errs, fmt.Errorf("the API key named %q is listed twice", k.Name))
		}
		seenName[k.Name], seenKey[k.digest] = true, true
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

func (e entry) key() (Key, error) {
	k := Key{Name: e.Name}
	if !validName.MatchString(e.Name) {
		return k, errors.New("name must be 1 to 64 letters, digits, '.', '_' or '-'")
	}
	switch {
	case e.Key != "" && e.KeySHA256 != "":
		return k, fmt.Errorf("%s: give key_sha256 or key, not both", e.Name)
	case e.Key != "":
		if len(e.Key) < MinKeyLength {
			return k, fmt.Errorf("%s: the key must be at least %d characters", e.Name, MinKeyLength)
		}
		k.digest = sha256.Sum256([]byte(e.Key))
	case e.KeySHA256 != "":
		b, err := hex.DecodeString(e.KeySHA256)
		if err != nil || len(b) != sha256.Size {
			return k, fmt.Errorf("%s: key_sha256 must be the 64 hex digits of the key's SHA-256", e.Name)
		}
		copy(k.digest[:], b)
	default:
		return k, fmt.Errorf("%s: give key_sha256 (or key)", e.Name)
	}
	for j, secret := range e.WebhookSecrets {
		if err := ValidSecret(secret); err != nil {
			return k, fmt.Errorf("%s: webhook secret %d: %w", e.Name, j+1, err)
		}
	}
	if len(e.WebhookSecrets) > 2 {
		return k, fmt.Errorf("%s: at most two webhook secrets (the new and the old one during a rotation)", e.Name)
	}
	k.WebhookSecrets = e.WebhookSecrets
	return k, nil
}

// ValidSecret is the rule for the service's own webhook secrets: whsec_
// followed by base64 of at least 16 random bytes.
func ValidSecret(secret string) error {
	raw, ok := strings.CutPrefix(secret, webhook.SecretPrefix)
	b, err := base64.StdEncoding.DecodeString(raw)
	if !ok || err != nil || len(b) < 16 || webhook.ValidSecret(secret) != nil {
		return errors.New("must be whsec_ followed by base64 of at least 16 random bytes")
	}
	return nil
}

func jsonReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// Len is how many keys there are; 0 means the service is open.
func (s *Set) Len() int { return len(s.keys) }

// Lookup finds the key token belongs to. Every key is compared, in
// constant time, whether one matched or not.
func (s *Set) Lookup(token string) (Key, bool) {
	d := sha256.Sum256([]byte(token))
	found := -1
	for i := range s.keys {
		if subtle.ConstantTimeCompare(d[:], s.keys[i].digest[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Key{}, false
	}
	return s.keys[found], true
}

// WebhookSecrets are the secrets of the key named name (none when it has
// none or no longer exists).
func (s *Set) WebhookSecrets(name string) []string {
	for _, k := range s.keys {
		if k.Name == name {
			return k.WebhookSecrets
		}
	}
	return nil
}

// Ring is the set in force, swapped whole on a reload, so a request sees
// either the old set or the new one.
type Ring struct {
	inline []string
	file   string
	set    atomic.Pointer[Set]
}

// Load reads the keys (file "" = none).
func Load(inline []string, file string) (*Ring, error) {
	r := &Ring{inline: inline, file: file}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the keys file again. A bad file is refused and the keys in
// force stay.
func (r *Ring) Reload() error {
	var content []byte
	if r.file != "" {
		b, err := os.ReadFile(r.file)
		if err != nil {
			return fmt.Errorf("THUMBNAILED_API_KEYS_FILE: %w", err)
		}
		content = b
	}
	s, err := Parse(r.inline, content)
	if err != nil {
		return err
	}
	r.set.Store(s)
	return nil
}

// Current is the set in force.
func (r *Ring) Current() *Set { return r.set.Load() }

// WebhookSecrets are the secrets of the key named name in the set in force.
func (r *Ring) WebhookSecrets(name string) []string { return r.Current().WebhookSecrets(name) }

// File is the keys file being read ("" when there is none).
func (r *Ring) File() string { return r.file }
