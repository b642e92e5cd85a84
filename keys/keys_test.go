package keys_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/keys"
)

const (
	secretA = "whsec_c3lzdGVtdGVzdC1zZWNyZXQtMzItYnl0ZXMhISE="
	secretB = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)

func digest(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:])
}

func TestParseReadsInlineKeysAndTheFile(t *testing.T) {
	is := is.New(t)
	file := `[{"name":"acme","key_sha256":"` + digest("acme-secret-key-123") + `","webhook_secrets":["` + secretA + `","` + secretB + `"]},
	          {"name":"beta","key":"beta-secret-key-4567"}]`
	set, err := keys.Parse([]string{"inline-key-0123456789"}, []byte(file))
	is.NoErr(err)
	is.Equal(set.Len(), 3)

	k, ok := set.Lookup("acme-secret-key-123")
	is.True(ok)
	is.Equal(k.Name, "acme")
	is.Equal(k.WebhookSecrets, []string{secretA, secretB}) // both sign during a rotation
	is.Equal(k.Owner(), digest("acme-secret-key-123")[:32])

	k, ok = set.Lookup("beta-secret-key-4567")
	is.True(ok)
	is.Equal(k.Name, "beta")
	is.Equal(len(k.WebhookSecrets), 0)

	k, ok = set.Lookup("inline-key-0123456789")
	is.True(ok)
	is.Equal(k.Name, "key-1")

	_, ok = set.Lookup("acme-secret-key-12") // a prefix is not the key
	is.True(!ok)
	is.Equal(set.WebhookSecrets("acme"), []string{secretA, secretB})
	is.Equal(len(set.WebhookSecrets("nobody")), 0)
}

func TestParseReportsEveryProblemWithoutRepeatingAKeyOrSecret(t *testing.T) {
	is := is.New(t)
	file := `[{"name":"a","key":"short"},
	          {"name":"b"},
	          {"name":"bad name!","key":"0123456789abcdef0"},
	          {"name":"c","key_sha256":"abc"},
	          {"name":"d","key":"d-key-0123456789ab","webhook_secrets":["whsec_notbase64!!"]},
	          {"name":"e","key":"e-key-0123456789ab","key_sha256":"` + digest("x") + `"},
	          {"name":"f","key":"dup-key-0123456789"},
	          {"name":"f","key":"dup-key-0123456789"}]`
	_, err := keys.Parse([]string{"tiny"}, []byte(file))
	is.True(err != nil)
	msg := err.Error()
	for _, want := range []string{"THUMBNAILED_API_KEYS:", "entry 1", "entry 2", "entry 3", "entry 4", "entry 5", "entry 6", `name "f" is used twice`, "listed twice"} {
		is.True(strings.Contains(msg, want)) // every problem is reported
	}
	for _, secret := range []string{"tiny", "short", "d-key-0123456789ab", "whsec_notbase64", "dup-key-0123456789"} {
		is.True(!strings.Contains(msg, secret)) // no key or secret is repeated
	}
	_, err = keys.Parse(nil, []byte(`{"not":"a list"}`))
	is.True(err != nil)
	_, err = keys.Parse(nil, []byte(`[{"name":"x","key":"x-key-0123456789ab","extra":1}]`))
	is.True(err != nil) // unknown fields are refused: a typo is not silently ignored
}

func TestReloadSwapsTheSetAndKeepsItOnABadFile(t *testing.T) {
	is := is.New(t)
	path := filepath.Join(t.TempDir(), "keys.json")
	write := func(s string) { is.NoErr(os.WriteFile(path, []byte(s), 0o600)) }
	write(`[{"name":"old","key":"old-key-0123456789"}]`)
	ring, err := keys.Load(nil, path)
	is.NoErr(err)
	_, ok := ring.Current().Lookup("old-key-0123456789")
	is.True(ok)

	write(`[{"name":"old","key":"old-key-0123456789"},{"name":"new","key":"new-key-0123456789"}]`)
	is.NoErr(ring.Reload())
	_, ok = ring.Current().Lookup("new-key-0123456789")
	is.True(ok) // a key added to the file works after the reload

	write(`[{"name":"broken"`)
	is.True(ring.Reload() != nil)
	_, ok = ring.Current().Lookup("new-key-0123456789")
	is.True(ok) // a bad file is refused; the keys in force stay

	_, err = keys.Load(nil, filepath.Join(t.TempDir(), "missing.json"))
	is.True(err != nil)
}

// A keys file that lists no key would open the API: it is a bad file, at
// start and on a reload (which keeps the keys in force).
func TestAKeysFileWithoutKeysIsRefused(t *testing.T) {
	is := is.New(t)
	_, err := keys.Parse(nil, []byte(`[]`))
	is.True(err != nil)
	is.True(strings.Contains(err.Error(), "lists no key"))

	path := filepath.Join(t.TempDir(), "keys.json")
	is.NoErr(os.WriteFile(path, []byte(`[{"name":"a","key":"a-key-0123456789ab"}]`), 0o600))
	ring, err := keys.Load(nil, path)
	is.NoErr(err)
	is.NoErr(os.WriteFile(path, []byte(`[]`), 0o600))
	is.True(ring.Reload() != nil)
	is.Equal(ring.Current().Len(), 1) // still closed
}

func TestNoKeysMeansOpen(t *testing.T) {
	is := is.New(t)
	ring, err := keys.Load(nil, "")
	is.NoErr(err)
	is.Equal(ring.Current().Len(), 0)
	_, ok := ring.Current().Lookup("")
	is.True(!ok)
}

func TestValidSecret(t *testing.T) {
	is := is.New(t)
	is.NoErr(keys.ValidSecret(secretA))
	for _, bad := range []string{"", "whsec_", "secret", "whsec_c2hvcnQ=", "whsec_***"} {
		is.True(keys.ValidSecret(bad) != nil)
	}
}
