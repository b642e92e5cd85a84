package mailaddr_test

import (
	"strings"
	"testing"

	"github.com/thumbnailed/thumbnailed/mailaddr"
)

// FuzzParse checks what the rest of the service relies on, whatever the
// input: an accepted address is printable ASCII with one '@' and no encoded
// word, parses back to itself, keeps its case-folded Key, masks all of its
// local part but the first character; a refusal never repeats the address.
func FuzzParse(f *testing.F) {
	for _, tt := range accepted {
		f.Add(tt.in)
	}
	for _, tt := range refused {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := mailaddr.Parse(s)
		if err != nil {
			if a != (mailaddr.Address{}) {
				t.Fatalf("refused with a non-zero Address %#v", a)
			}
			msg := err.Error()
			if msg == "" || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("bad error message %q", msg)
			}
			// An address-like input (something@something.something) never
			// appears in the message.
			local, domain, ok := strings.Cut(s, "@")
			if ok && local != "" && strings.Contains(domain, ".") && !strings.HasSuffix(domain, ".") && strings.Contains(msg, s) {
				t.Fatalf("the error %q repeats the address %q", msg, s)
			}
			return
		}
		str := a.String()
		for i := 0; i < len(str); i++ {
			if str[i] < 0x21 || str[i] > 0x7e {
				t.Fatalf("String() %q has byte %#x", str, str[i])
			}
		}
		if strings.Contains(str, "=?") || strings.Contains(str, "?=") {
			t.Fatalf("String() %q has an encoded word", str)
		}
		if strings.Count(str, "@") != 1 {
			t.Fatalf("String() %q does not have exactly one @", str)
		}
		if len(str) > mailaddr.MaxLength {
			t.Fatalf("String() is %d bytes", len(str))
		}
		if !strings.EqualFold(str, s) {
			t.Fatalf("String() %q is not the input %q up to case", str, s)
		}
		again, err := mailaddr.Parse(str)
		if err != nil || again != a {
			t.Fatalf("String() %q does not parse back: %v, %#v != %#v", str, err, again, a)
		}

		local, domain, _ := strings.Cut(str, "@")
		if domain != strings.ToLower(domain) {
			t.Fatalf("domain %q is not lower case", domain)
		}
		if m := a.Masked(); m != local[:1]+"***@"+domain {
			t.Fatalf("Masked() %q shows more than %q of %q", m, local[:1], str)
		}

		key := a.Key()
		if key != strings.ToLower(key) || strings.Count(key, "@") != 1 || !strings.HasSuffix(key, "@"+domain) ||
			strings.HasPrefix(key, "@") || strings.Contains(key, "=?") {
			t.Fatalf("Key() %q of %q", key, str)
		}
		// Spelling the same address in other cases changes neither whether
		// it is accepted nor what the limit counts.
		for _, other := range []string{strings.ToUpper(s), strings.ToLower(s)} {
			b, err := mailaddr.Parse(other)
			if err != nil {
				t.Fatalf("%q is accepted but %q is not: %v", s, other, err)
			}
			if b.Key() != key {
				t.Fatalf("Key() of %q is %q, of %q is %q", s, key, other, b.Key())
			}
		}
	})
}
