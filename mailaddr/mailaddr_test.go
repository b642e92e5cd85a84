package mailaddr_test

import (
	"strings"
	"testing"

	"github.com/matryer/is"
	"golang.org/x/net/idna"

	"github.com/thumbnailed/thumbnailed/mailaddr"
)

// domainOfLength builds a valid domain name of exactly n bytes (n >= 5)
// ending in ".com".
func domainOfLength(n int) string {
	var b strings.Builder
	rest := n - len(".com")
	for rest > 0 {
		l := min(rest, mailaddr.MaxLabelLength)
		if rest-l == 1 { // a dot with no label after it: shorten this label
			l--
		}
		if b.Len() > 0 {
			b.WriteByte('.')
			l--
			rest--
		}
		b.WriteString(strings.Repeat("d", l))
		rest -= l
	}
	b.WriteString(".com")
	return b.String()
}

var (
	local64 = strings.Repeat("a", mailaddr.MaxLocalLength)
	// 64 + 1 + 189 = 254 bytes: the longest address.
	longest = local64 + "@" + domainOfLength(mailaddr.MaxLength-mailaddr.MaxLocalLength-1)
	// 64 + 1 + 190 = 255 bytes.
	tooLong = local64 + "@" + domainOfLength(mailaddr.MaxLength-mailaddr.MaxLocalLength)
	// 1 + 1 + 253 = 255 bytes, with the longest domain the DNS allows.
	tooLongShortLocal = "a@" + domainOfLength(mailaddr.MaxDomainLength)
	// xn-- form of "ｅｘａｍｐｌｅ" (fullwidth), which a lenient IDNA decoder
	// maps to the ASCII "example".
	fullwidthPunycode, _ = idna.Punycode.ToASCII("ｅｘａｍｐｌｅ")
	// xn-- form of "Über": IDNA 2008 allows only the lower-case "über".
	upperPunycode, _ = idna.Punycode.ToASCII("Über")
)

// accepted maps an address to the exact String Parse must return.
var accepted = []struct{ in, want string }{
	{"me@example.com", "me@example.com"},
	{"first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"},
	{"o'brien@example.org", "o'brien@example.org"},
	{"x@xn--bcher-kva.example", "x@xn--bcher-kva.example"},
	{"x@XN--BCHER-KVA.Example", "x@xn--bcher-kva.example"},
	{"x@xn--Bcher-kva.example", "x@xn--bcher-kva.example"}, // the DNS ignores ASCII case, even in punycode
	{"Mary.Smith@Example.COM", "Mary.Smith@example.com"},
	{longest, longest},
	{local64 + "@example.com", local64 + "@example.com"},
	{"a@" + strings.Repeat("b", 63) + ".com", "a@" + strings.Repeat("b", 63) + ".com"},
	{"a#$&'*+/=^_`{|}~-z@example.com", "a#$&'*+/=^_`{|}~-z@example.com"},
	{"bounce+user=example.com@lists.example.org", "bounce+user=example.com@lists.example.org"},
	{"user@thumbnailed.test", "user@thumbnailed.test"},
	{"user@mail.example.net", "user@mail.example.net"},
	{"user@123.example.com", "user@123.example.com"},
	{"user@my-host.example.com", "user@my-host.example.com"},
	{"a@b.c", "a@b.c"},
}

// refused maps an address to a phrase its error must contain.
var refused = []struct{ name, in, want string }{
	// encoded words (hole 1)
	{"q encoded word", "=?utf-8?q?victim?=@example.com", "encoded words (=?...?=)"},
	{"b encoded word", "=?UTF-8?B?dmljdGlt?=@example.com", "encoded words (=?...?=)"},
	{"latin-1 encoded word", "=?iso-8859-1?q?victim?=@example.com", "encoded words (=?...?=)"},
	{"encoded word in the middle", "a=?utf-8?q?b?=c@example.com", "encoded words (=?...?=)"},
	{"encoded word with a name", "=?utf-8?q?Bob?= <bob@example.com>", "without a name or angle brackets"},
	{"half an encoded word", "victim?=@example.com", "encoded words"},
	{"question mark", "vic?tim@example.com", "must not contain '?'"},
	{"question mark behind a dot", "a=.?b@example.com", "must not contain '?'"},
	// IP addresses and local names (hole 2)
	{"IPv4 literal", "a@[127.0.0.1]", "not an IP address"},
	{"IPv6 literal", "a@[IPv6:::1]", "not an IP address"},
	{"private IPv4", "a@10.0.0.1", "not an IP address"},
	{"link-local metadata IPv4", "a@169.254.169.254", "not an IP address"},
	{"short IPv4", "a@127.1", "not an IP address"},
	{"hex IPv4", "a@1.0x7f", "not an IP address"},
	{"decimal IPv4", "a@2130706433", "not an IP address"},
	{"localhost", "a@localhost", "must not be localhost"},
	{"LOCALHOST", "a@LOCALHOST", "must not be localhost"},
	{"under localhost", "a@www.localhost", "must not be localhost"},
	{"single label", "a@internal-host", "full domain name with a dot"},
	{"mDNS", "a@printer.local", "must not end in .local: "},
	{"localdomain", "a@host.localdomain", "must not end in .localdomain: "},
	{"internal", "a@db.internal", "must not end in .internal: "},
	{"intranet", "a@wiki.intranet", "must not end in .intranet: "},
	{"private", "a@x.private", "must not end in .private: "},
	{"corp", "a@x.corp", "must not end in .corp: "},
	{"home", "a@nas.home", "must not end in .home: "},
	{"lan", "a@nas.lan", "must not end in .lan: "},
	{"mail", "a@x.mail", "must not end in .mail: "},
	{"home.arpa", "a@router.home.arpa", "must not end in .arpa: "},
	{"reverse DNS", "a@1.0.0.127.in-addr.arpa", "must not end in .arpa: "},
	{"invalid", "a@nowhere.invalid", "must not end in .invalid: "},
	{"onion", "a@abcdef.onion", "must not end in .onion: "},
	{"alt", "a@x.alt", "must not end in .alt: "},
	{"upper-case special use", "a@Printer.LOCAL", "must not end in .local: "},
	// invisible, control and non-ASCII characters (hole 2)
	{"zero-width space", "vic\u200btim@example.com", "invisible or formatting characters such as zero-width spaces, line separators or text-direction marks (found U+200B)"},
	{"line separator", "victim@example.com\u2028", "invisible or formatting characters such as zero-width spaces, line separators or text-direction marks (found U+2028)"},
	{"paragraph separator", "victim\u2029@example.com", "(found U+2029)"},
	{"right-to-left override", "\u202emoc.elpmaxe@mitciv", "invisible or formatting characters such as zero-width spaces, line separators or text-direction marks (found U+202E)"},
	{"byte order mark", "\ufeffvictim@example.com", "invisible or formatting characters such as zero-width spaces, line separators or text-direction marks (found U+FEFF)"},
	{"word joiner", "vic\u2060tim@example.com", "(found U+2060)"},
	{"soft hyphen", "vic\u00adtim@example.com", "(found U+00AD)"},
	{"variation selector", "victim\ufe0f@example.com", "(found U+FE0F)"},
	{"hangul filler", "victim\u3164@example.com", "(found U+3164)"},
	{"NUL", "victim\x00@example.com", "control characters such as line breaks, tabs or NUL (found U+0000)"},
	{"CR", "victim@example.com\r", "control characters such as line breaks, tabs or NUL (found U+000D)"},
	{"LF", "victim@example.com\n", "control characters such as line breaks, tabs or NUL (found U+000A)"},
	{"header injection", "victim@example.com\r\nBcc: other@example.org", "control characters such as line breaks, tabs or NUL (found U+000D)"},
	{"TAB", "victim\t@example.com", "control characters such as line breaks, tabs or NUL (found U+0009)"},
	{"DEL", "victim\x7f@example.com", "control characters such as line breaks, tabs or NUL (found U+007F)"},
	{"C1 next line", "victim\u0085@example.com", "control characters such as line breaks, tabs or NUL (found U+0085)"},
	{"invalid UTF-8", "victim\xff@example.com", "not valid UTF-8"},
	{"invalid UTF-8 in the domain", "victim@ex\xc3ample.com", "not valid UTF-8"},
	{"non-ASCII local part", "jöhn@example.com", "internationalised mailbox names are not supported (found U+00F6)"},
	{"non-ASCII domain", "a@exämple.com", "write an internationalised domain in its xn-- (punycode) form (found U+00E4)"},
	{"fullwidth at sign", "victim＠example.com", "must be plain ASCII"},
	{"no-break space", "victim\u00a0@example.com", "must not contain spaces (found U+00A0)"},
	{"ideographic space", "victim\u3000@example.com", "must not contain spaces (found U+3000)"},
	// syntax that mail systems read in more than one way
	{"display name", "Bob <bob@example.com>", "without a name or angle brackets"},
	{"angle brackets", "<bob@example.com>", "without a name or angle brackets"},
	{"two addresses", "bob@example.com,eve@example.com", "a single email address, without commas or semicolons"},
	{"two addresses with a semicolon", "bob@example.com;eve@example.com", "a single email address, without commas or semicolons"},
	{"quoted local part", `"bob"@example.com`, "quoted mailbox names are not accepted"},
	{"quoted local part with @", `"eve@example.org"@example.com`, "quoted mailbox names are not accepted"},
	{"backslash", `bob\@x@example.com`, "quotes or backslashes"},
	{"comment", "bob(comment)@example.com", "comments are not accepted"},
	{"trailing comment", "bob@example.com (Bob)", "comments are not accepted"},
	{"leading space", " bob@example.com", "must not contain spaces"},
	{"inner space", "bob smith@example.com", "must not contain spaces"},
	{"port", "bob@example.com:25", "must not contain a colon"},
	{"group", "undisclosed:bob@example.com", "must not contain a colon"},
	{"percent hack", "victim%internal.example@example.com", `must not contain '%': routing`},
	{"bang path", "host!victim@example.com", `must not contain '!': routing`},
	// structure
	{"empty", "", "is empty"},
	{"no @", "bob", "must have an @"},
	{"two @", "a@b@example.com", "exactly one @"},
	{"empty local part", "@example.com", "part before the @ is empty"},
	{"empty domain", "bob@", "domain after the @ is empty"},
	{"255 bytes", tooLong, "is 255 bytes long; the limit is 254"},
	{"255 bytes with a short local part", tooLongShortLocal, "is 255 bytes long; the limit is 254"},
	{"65-byte local part", strings.Repeat("a", 65) + "@example.com", "part before the @ is 65 bytes long; the limit is 64"},
	{"64-char label", "a@" + strings.Repeat("b", 64) + ".com", "at most 63 characters (one has 64)"},
	{"leading dot", ".bob@example.com", "must not start or end with a dot or have two dots in a row"},
	{"trailing dot", "bob.@example.com", "must not start or end with a dot or have two dots in a row"},
	{"double dot", "bo..b@example.com", "must not start or end with a dot or have two dots in a row"},
	{"only a dot", ".@example.com", "must not start or end with a dot"},
	{"option", "-oQ/tmp/x@example.com", "must not start with '-', '/' or '|'"},
	{"file", "/tmp/x@example.com", "must not start with '-', '/' or '|'"},
	{"pipe", "|cmd@example.com", "must not start with '-', '/' or '|'"},
	{"domain leading dot", "bob@.example.com", "domain must not start with a dot or have two dots in a row"},
	{"domain double dot", "bob@example..com", "domain must not start with a dot or have two dots in a row"},
	{"domain trailing dot", "bob@example.com.", "domain must not end with a dot"},
	{"domain only a dot", "bob@.", "domain must not end with a dot"},
	{"underscore", "bob@ex_ample.com", "only letters, digits, hyphens and dots (found '_')"},
	{"plus in domain", "bob@ex+ample.com", "only letters, digits, hyphens and dots (found '+')"},
	{"label leading hyphen", "bob@-example.com", "must not start or end with a hyphen"},
	{"label trailing hyphen", "bob@example-.com", "must not start or end with a hyphen"},
	{"reserved hyphens", "bob@ab--cd.com", "reserved for xn-- (punycode) names"},
	{"empty punycode", "bob@xn--.com", "must not start or end with a hyphen"},
	{"ASCII punycode", "bob@xn--localhost-.example", "must not start or end with a hyphen"},
	{"upper-case Unicode in punycode", "bob@" + upperPunycode + ".example", "not a valid internationalised domain name"},
	{"garbage punycode", "bob@xn--zz.example", "not a valid internationalised domain name"},
	{"fullwidth punycode", "bob@" + fullwidthPunycode + ".com", "not a valid internationalised domain name"},
}

func TestParseAccepts(t *testing.T) {
	for _, tt := range accepted {
		t.Run(tt.in, func(t *testing.T) {
			is := is.New(t)
			a, err := mailaddr.Parse(tt.in)
			is.NoErr(err)
			is.Equal(a.String(), tt.want)
			again, err := mailaddr.Parse(a.String())
			is.NoErr(err)
			is.Equal(again, a) // String parses back to the same Address
		})
	}
}

func TestLongestIsTheLimit(t *testing.T) {
	is := is.New(t)
	is.Equal(len(longest), mailaddr.MaxLength)
	is.Equal(len(tooLong), mailaddr.MaxLength+1)
	is.Equal(len(tooLongShortLocal), mailaddr.MaxLength+1)
	is.Equal(len(local64), 64)
	is.True(strings.HasPrefix(fullwidthPunycode, "xn--"))
	is.True(strings.HasPrefix(upperPunycode, "xn--"))
}

func TestParseRefuses(t *testing.T) {
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			a, err := mailaddr.Parse(tt.in)
			is.True(err != nil) // refused
			is.Equal(a, mailaddr.Address{})
			msg := err.Error()
			is.True(strings.Contains(msg, tt.want)) // the message names the problem
			if tt.in != "" {
				is.True(!strings.Contains(msg, tt.in)) // never repeats the address
			}
			if local, _, _ := strings.Cut(tt.in, "@"); len(local) >= 4 {
				is.True(!strings.Contains(msg, local)) // nor its local part
			}
		})
	}
}

func TestKey(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		same bool
	}{
		{"Victim@Example.COM", "victim@example.com", true},     // case is folded in both parts
		{"VICTIM@EXAMPLE.COM", "victim@example.com", true},     // ...
		{"victim+1@example.com", "victim@example.com", true},   // plus-addressing is one mailbox
		{"victim+a.b@example.com", "victim@example.com", true}, // the whole tag goes
		{"Victim+News@Example.com", "victim+other@example.com", true},
		{"v.i.c.t.i.m@example.com", "victim@example.com", true}, // Gmail ignores dots
		{"vic.tim+x@EXAMPLE.com", "victim@example.com", true},
		{"x@XN--BCHER-KVA.example", "x@xn--bcher-kva.example", true},
		{"victim@example.com", "victim@example.org", false},
		{"victim@example.com", "victim@mail.example.com", false},
		{"victim@example.com", "victim2@example.com", false},
		{"mary-jane@example.com", "mary@example.com", false}, // '-' is not a subaddress separator here
		{"+tag@example.com", "tag@example.com", false},       // nothing before '+': the whole local part is the mailbox
	} {
		t.Run(tt.a+" "+tt.b, func(t *testing.T) {
			is := is.New(t)
			a, err := mailaddr.Parse(tt.a)
			is.NoErr(err)
			b, err := mailaddr.Parse(tt.b)
			is.NoErr(err)
			is.Equal(a.Key() == b.Key(), tt.same)
		})
	}
}

// What Key and Masked make of an address; neither changes what is sent.
func TestKeyAndMasked(t *testing.T) {
	for _, tt := range []struct{ in, key, masked string }{
		{"Victim@Example.COM", "victim@example.com", "V***@example.com"},
		{"First.Last+Tag@Sub.Example.co.uk", "firstlast@sub.example.co.uk", "F***@sub.example.co.uk"},
		{"a.+x@example.com", "a@example.com", "a***@example.com"},
		{"+tag@example.com", "+tag@example.com", "+***@example.com"},
		{"o'brien@example.org", "o'brien@example.org", "o***@example.org"},
		{"mary-jane@example.com", "mary-jane@example.com", "m***@example.com"},
		{"mary@example.com", "mary@example.com", "m***@example.com"},
		{"Mary.Smith@Example.COM", "marysmith@example.com", "M***@example.com"},
		{"m@example.com", "m@example.com", "m***@example.com"},
		{"x@xn--bcher-kva.example", "x@xn--bcher-kva.example", "x***@xn--bcher-kva.example"},
		{"secret+token@example.org", "secret@example.org", "s***@example.org"},
		{longest, longest, "a***@" + strings.SplitN(longest, "@", 2)[1]},
	} {
		t.Run(tt.in, func(t *testing.T) {
			is := is.New(t)
			a, err := mailaddr.Parse(tt.in)
			is.NoErr(err)
			is.Equal(a.Key(), tt.key)
			is.Equal(a.String(), strings.Split(tt.in, "@")[0]+"@"+strings.ToLower(strings.Split(tt.in, "@")[1])) // Key does not change what is sent
			is.Equal(a.Masked(), tt.masked)
			local := strings.SplitN(a.String(), "@", 2)[0]
			if len(local) > 1 {
				is.True(!strings.Contains(a.Masked(), local[:2])) // nothing past the first character
			}
		})
	}
}

func TestZeroAddressIsNoAddress(t *testing.T) {
	is := is.New(t)
	var a mailaddr.Address
	is.Equal(a.String(), "")
	is.Equal(a.Key(), "")
	is.Equal(a.Masked(), "")
}
