// Package mailaddr is the one rule for the email addresses clients give
// Thumbnailed: Parse is called when a job is submitted and again before a
// message is sent, and what it returns is the exact address used in RCPT TO
// and in the To: header.
//
// # The rule
//
// An address is a plain ASCII local@domain, at most 254 bytes (MaxLength):
//
//   - every byte is printable ASCII (0x21-0x7e): no spaces, no control
//     characters (NUL, tab, CR, LF, DEL, C1), no invisible or formatting
//     characters (zero-width spaces, U+2028/U+2029 separators, bidi
//     controls, U+FEFF, variation selectors and other default-ignorable code
//     points), no other non-ASCII text and no invalid UTF-8. Internationalised
//     mailbox names (SMTPUTF8) are not accepted; an internationalised domain
//     is accepted in its ASCII xn-- (punycode) form;
//   - no display name, angle brackets, comments (parentheses), quoted local
//     parts, backslashes, commas, semicolons, colons or square brackets (so
//     no IP literals such as [127.0.0.1]);
//   - no '?' at all: an RFC 2047 encoded word ("=?utf-8?q?victim?=") needs
//     it, and some mail systems decode such words in addresses, which would
//     deliver to a mailbox other than the one checked and counted. Real
//     mailboxes do not use '?';
//   - no '%' or '!' (the percent hack and UUCP bang paths route mail through
//     one host to another);
//   - exactly one '@';
//   - the local part is an RFC 5322 dot-atom of at most 64 bytes: letters,
//     digits and #$&'*+-/=^_`{|}~ in atoms separated by single dots, with no
//     leading or trailing dot, and not starting with '-' (a command-line
//     option to a sendmail program), '/' (a file) or '|' (a pipe): the
//     same first characters the Exim default configuration refuses;
//   - the domain is a DNS host name of at most 253 bytes: two or more
//     dot-separated labels of 1-63 letters, digits and hyphens, no label
//     starting or ending with a hyphen, no trailing dot, no "--" in the third
//     and fourth positions except in an xn-- label that is a valid, canonical
//     A-label (golang.org/x/net/idna's Registration profile: the decoded
//     label needs no mapping, so no upper-case or fullwidth forms that a
//     lenient decoder would fold into another name, and it encodes back to
//     the same label); the last label is not a number (all digits, or 0x
//     followed by hex digits, which resolvers read as an IPv4 address, as in
//     10.0.0.1 or 0x7f.1);
//   - the domain is not localhost or under localhost (RFC 6761 section 6.3)
//     and not under a name that is resolved only on local or private
//     networks, that is not reached through the DNS, or that can never
//     receive mail: .local (RFC 6762), .localdomain (the customary
//     /etc/hosts name of the machine itself), .internal (reserved by ICANN in
//     2024 for private use), .intranet, .private, .corp, .home and .lan
//     (private names listed in RFC 6762 appendix G), .mail (which ICANN will
//     not delegate, like .corp and .home), .arpa (the infrastructure domain,
//     RFC 3172, including home.arpa, RFC 8375, and the reverse-lookup
//     domains in-addr.arpa and ip6.arpa), .invalid (RFC 6761 section 6.4),
//     .onion (RFC 7686) and .alt (RFC 9476).
//
// The names .test and .example (RFC 6761 sections 6.2 and 6.5) and the
// domains example.com, example.net and example.org (RFC 2606) are accepted:
// RFC 6761 asks applications not to treat them as special, they are never
// delegated to anything a client could reach, and test setups use them.
//
// A domain name that is public but resolves to a private address (a
// "127.0.0.1.nip.io") cannot be told apart without a DNS lookup: refusing to
// deliver to private addresses is the SMTP relay's job.
//
// Parse lower-cases the domain (the DNS ignores case, and one spelling makes
// the address canonical); the local part is kept exactly as given.
package mailaddr

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Limits from RFC 5321 section 4.5.3.1: a path is at most 256 bytes with its
// angle brackets, so an address is at most 254.
const (
	MaxLength       = 254
	MaxLocalLength  = 64
	MaxDomainLength = 253
	MaxLabelLength  = 63
)

// Address is an email address that passed the rule, in the exact form it
// will be sent to. The zero Address is "no address": its String, Key and
// Masked are all "".
type Address struct{ local, domain string }

// String is local@domain exactly as it will be used in RCPT TO and To:.
func (a Address) String() string {
	if a.local == "" {
		return ""
	}
	return a.local + "@" + a.domain
}

// Key is what the per-recipient limit counts: the mailbox a mail system
// will deliver the address to, so that spellings of one mailbox count as one.
// It errs on the side of counting more spellings as one, because a limit
// that merges two mailboxes only lets each receive fewer messages, while a
// limit that can be split lets an attacker flood one inbox:
//
//   - the domain is lower-case (the DNS ignores case; Parse already folds it);
//   - the local part is folded to lower case: RFC 5321 allows a server to
//     treat case as significant, but practically none does;
//   - a "+tag" suffix is removed (everything from the first '+', when
//     something comes before it): Gmail, Outlook.com, iCloud, Fastmail,
//     Proton and Postfix/Exim set-ups with the usual recipient delimiter
//     deliver victim+anything to victim, so otherwise every tag would count
//     as a new recipient;
//   - dots are removed: Gmail (and Google Workspace domains, whose MX cannot
//     be told from the name) ignores dots, so v.ictim, vi.ctim ... would
//     otherwise each count as a new recipient. A rare collision between two
//     people at one domain (john.smith and johnsmith) only makes them share
//     a limit.
//
// A '-' suffix is not removed: hyphens are common in real mailbox names
// (jean-pierre, mary-ann), '-' subaddressing must be set up per server, and
// folding it would make many different people share one limit.
//
// Key is an identifier for counting, not an address to send to.
func (a Address) Key() string {
	if a.local == "" {
		return ""
	}
	local := strings.ToLower(a.local)
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	// local does not start with a dot, so something is left.
	local = strings.ReplaceAll(local, ".", "")
	return local + "@" + a.domain
}

// Masked shows the address in logs and in job JSON without revealing it:
// the first character of the local part, "***", and the domain
// ("m***@example.com").
func (a Address) Masked() string {
	if a.local == "" {
		return ""
	}
	return a.local[:1] + "***@" + a.domain
}

// Parse checks s against the rule (see the package documentation) and
// returns the address. The error is a sentence a client can act on; it never
// repeats the address (at most a single character or code point of it).
func Parse(s string) (Address, error) {
	if s == "" {
		return Address{}, errors.New("the email address is empty")
	}
	if err := checkCharacters(s); err != nil {
		return Address{}, err
	}
	if len(s) > MaxLength {
		return Address{}, fmt.Errorf("the email address is %d bytes long; the limit is %d", len(s), MaxLength)
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok {
		return Address{}, errors.New("the email address must have an @ between the mailbox name and the domain, as in me@example.com")
	}
	if strings.IndexByte(domain, '@') >= 0 {
		return Address{}, errors.New("the email address must contain exactly one @")
	}
	if err := checkLocal(local); err != nil {
		return Address{}, err
	}
	domain, err := checkDomain(domain)
	if err != nil {
		return Address{}, err
	}
	return Address{local: local, domain: domain}, nil
}

// A character problem, in the order they are reported when an address has
// several: the one most likely to be an attack, or the most telling, first.
type problem int

const (
	invalidUTF8 problem = iota
	control
	invisible
	angleBracket
	encodedWord
	list
	quote
	comment
	squareBracket
	space
	nonASCII
	colon
	routing
	question
	other
	none
)

// plainProblems are the problems told without the character found.
var plainProblems = map[problem]string{
	invalidUTF8:   "the email address is not valid UTF-8 text",
	angleBracket:  "the email address must be a bare address such as me@example.com, without a name or angle brackets",
	encodedWord:   "the email address must not contain encoded words (=?...?=)",
	list:          "give a single email address, without commas or semicolons",
	quote:         "the email address must not contain quotes or backslashes: quoted mailbox names are not accepted",
	comment:       "the email address must not contain parentheses: comments are not accepted",
	squareBracket: "the domain must be a name such as example.com, not an IP address in square brackets",
	colon:         "the email address must not contain a colon",
	question:      "the email address must not contain '?'",
}

// checkCharacters reports the first problem (by the order above) among the
// characters of s. When it returns nil, s is printable ASCII and every byte
// is a letter, a digit, '.', '@' or one of #$&'*+-/=^_`{|}~.
func checkCharacters(s string) error {
	worst, at, bad := none, 0, rune(0)
	if strings.Contains(s, "=?") || strings.Contains(s, "?=") {
		worst = encodedWord
	}
	for i, r := range s {
		size := 0
		if r == utf8.RuneError {
			_, size = utf8.DecodeRuneInString(s[i:])
		}
		p := classify(r, size)
		if p < worst {
			worst, at, bad = p, i, r
		}
	}
	if msg, ok := plainProblems[worst]; ok {
		return errors.New(msg)
	}
	switch worst {
	case none:
		return nil
	case control:
		return fmt.Errorf("the email address must not contain control characters such as line breaks, tabs or NUL (found %U)", bad)
	case invisible:
		return fmt.Errorf("the email address must not contain invisible or formatting characters such as zero-width spaces, line separators or text-direction marks (found %U)", bad)
	case space:
		if bad == ' ' {
			return errors.New("the email address must not contain spaces")
		}
		return fmt.Errorf("the email address must not contain spaces (found %U)", bad)
	case nonASCII:
		if i := strings.IndexByte(s, '@'); i >= 0 && at > i {
			return fmt.Errorf("the domain must be plain ASCII: write an internationalised domain in its xn-- (punycode) form (found %U)", bad)
		}
		return fmt.Errorf("the email address must be plain ASCII: internationalised mailbox names are not supported (found %U)", bad)
	case routing:
		return fmt.Errorf("the email address must not contain %q: routing mail through another host is not accepted", bad)
	default:
		return fmt.Errorf("the email address must not contain %q", bad)
	}
}

func classify(r rune, size int) problem {
	switch {
	case r == utf8.RuneError && size == 1:
		return invalidUTF8
	case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
		return control
	case r == ' ':
		return space
	case r >= 0x80:
		switch {
		case unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector):
			return invisible
		case unicode.Is(unicode.Zs, r):
			return space
		}
		return nonASCII
	}
	switch r {
	case '<', '>':
		return angleBracket
	case ',', ';':
		return list
	case '"', '\\':
		return quote
	case '(', ')':
		return comment
	case '[', ']':
		return squareBracket
	case ':':
		return colon
	case '%', '!':
		return routing
	case '?':
		return question
	}
	if isAtext(byte(r)) || r == '.' || r == '@' {
		return none
	}
	return other
}

// isAtext reports whether c is an RFC 5322 atext character this rule keeps
// (all of them but '!', '%' and '?', which checkCharacters refuses).
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("#$&'*+-/=^_`{|}~", c) >= 0
}

// checkLocal checks the part before the @; its characters are already known
// to be atext or dots.
func checkLocal(local string) error {
	switch {
	case local == "":
		return errors.New("the part before the @ is empty")
	case len(local) > MaxLocalLength:
		return fmt.Errorf("the part before the @ is %d bytes long; the limit is %d", len(local), MaxLocalLength)
	case local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, ".."):
		return errors.New("the part before the @ must not start or end with a dot or have two dots in a row")
	case local[0] == '-' || local[0] == '/' || local[0] == '|':
		return errors.New("the part before the @ must not start with '-', '/' or '|'")
	}
	return nil
}

// A special-use domain: the address is refused if its domain is the name or
// ends in "." + name.
type specialUse struct{ name, why string }

var specialUses = []specialUse{
	{"local", "it is resolved by multicast DNS on the local network only (RFC 6762)"},
	{"localdomain", "it is the customary name of the machine itself or its local network, not a public domain"},
	{"internal", "it is reserved for private networks (ICANN, 2024)"},
	{"intranet", "it is a private-network name, not a public domain (RFC 6762 appendix G)"},
	{"private", "it is a private-network name, not a public domain (RFC 6762 appendix G)"},
	{"corp", "it is a private-network name that ICANN will not delegate (RFC 6762 appendix G)"},
	{"home", "it is a private-network name that ICANN will not delegate (RFC 6762 appendix G)"},
	{"lan", "it is a private-network name, not a public domain (RFC 6762 appendix G)"},
	{"mail", "it is a name ICANN will not delegate because private networks use it"},
	{"arpa", "it is the DNS infrastructure domain, including home networks and reverse lookups of IP addresses (RFC 3172, RFC 8375)"},
	{"invalid", "it is guaranteed never to exist (RFC 6761)"},
	{"onion", "it names Tor onion services, which are not reached through the DNS (RFC 7686)"},
	{"alt", "it is reserved for names outside the DNS (RFC 9476)"},
}

// checkDomain checks the part after the @, whose characters are already
// known to be atext or dots, and returns it in lower case.
func checkDomain(domain string) (string, error) {
	if domain == "" {
		return "", errors.New("the domain after the @ is empty")
	}
	if len(domain) > MaxDomainLength {
		return "", fmt.Errorf("the domain is %d bytes long; the limit is %d", len(domain), MaxDomainLength)
	}
	d := strings.ToLower(domain)
	switch {
	case d[len(d)-1] == '.':
		return "", errors.New("the domain must not end with a dot")
	case d[0] == '.' || strings.Contains(d, ".."):
		return "", errors.New("the domain must not start with a dot or have two dots in a row")
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return "", fmt.Errorf("the domain may contain only letters, digits, hyphens and dots (found %q)", rune(c))
		}
	}
	labels := strings.Split(d, ".")
	idn := false
	for _, label := range labels {
		switch {
		case len(label) > MaxLabelLength:
			return "", fmt.Errorf("each dot-separated part of the domain must be at most %d characters (one has %d)", MaxLabelLength, len(label))
		case label[0] == '-' || label[len(label)-1] == '-':
			return "", errors.New("each dot-separated part of the domain must not start or end with a hyphen")
		case strings.HasPrefix(label, "xn--"):
			idn = true
		case len(label) >= 4 && label[2:4] == "--":
			return "", errors.New("a part of the domain has '--' in its third and fourth characters, which is reserved for xn-- (punycode) names")
		}
	}
	if d == "localhost" || strings.HasSuffix(d, ".localhost") {
		return "", errors.New("the domain must not be localhost: it names the machine itself (RFC 6761)")
	}
	if isNumber(labels[len(labels)-1]) {
		return "", errors.New("the domain must be a name such as example.com, not an IP address")
	}
	if len(labels) < 2 {
		return "", errors.New("the domain must be a full domain name with a dot, such as example.com")
	}
	for _, su := range specialUses {
		if d == su.name || strings.HasSuffix(d, "."+su.name) {
			return "", fmt.Errorf("the domain must not end in .%s: %s", su.name, su.why)
		}
	}
	if idn && !validIDN(d) {
		return "", errors.New("the domain has an xn-- part that is not a valid internationalised domain name in punycode")
	}
	return d, nil
}

// isNumber reports whether a label reads as a number to an IPv4 parser
// (inet_aton and the WHATWG URL host parser): all decimal digits, or 0x
// followed by hex digits. A domain ending in one is an IP address to them.
func isNumber(label string) bool {
	digits := "0123456789"
	if len(label) >= 2 && label[0] == '0' && label[1] == 'x' {
		label, digits = label[2:], "0123456789abcdef"
		if label == "" {
			return true // "0x" alone is 0 to inet_aton
		}
	}
	for i := 0; i < len(label); i++ {
		if strings.IndexByte(digits, label[i]) < 0 {
			return false
		}
	}
	return true
}

// validIDN reports whether a lower-case ASCII domain with xn-- labels is a
// valid internationalised name (idna.Registration) in its one canonical
// A-label form: every xn-- label
// decodes to non-ASCII text that may be registered (no mapping needed, so
// no fullwidth or upper-case forms that a lenient decoder would fold into
// another name) and encodes back to exactly the same label.
func validIDN(d string) bool {
	u, err := idna.Registration.ToUnicode(d)
	if err != nil {
		return false
	}
	a, err := idna.Registration.ToASCII(u)
	return err == nil && a == d
}
