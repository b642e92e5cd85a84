package safehttp

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// The outbound address rule (DESIGN.md, "Outbound address rule") lives in
// this file: which IP addresses and host names we never connect to, and the
// submit-time URL check built on it. The client (client.go) applies the same
// rule again at dial time, for every connection.

// IsForbiddenIP reports whether ip is off-limits for outbound requests:
// loopback, private, shared (CGNAT), link-local, unspecified, multicast,
// broadcast, reserved, IPv6 ULA and site-local, cloud metadata addresses, and
// every IPv6 form that embeds a forbidden IPv4 address (IPv4-mapped,
// IPv4-translated, NAT64, 6to4, Teredo). IPv4-compatible (::a.b.c.d) and
// local-use NAT64 addresses are refused whatever they embed. A nil or
// malformed ip is forbidden.
func IsForbiddenIP(ip net.IP) bool {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return true
	}
	return forbiddenReason(addr) != ""
}

type rangeRule struct {
	prefix netip.Prefix
	reason string
}

func rules(reason string, prefixes ...string) []rangeRule {
	out := make([]rangeRule, len(prefixes))
	for i, p := range prefixes {
		out[i] = rangeRule{netip.MustParsePrefix(p), reason}
	}
	return out
}

const (
	reasonMetadata    = "a cloud metadata address"
	reasonLoopback    = "a loopback address"
	reasonPrivate     = "a private network address"
	reasonLinkLocal   = "a link-local address"
	reasonUnspecified = "an unspecified address"
	reasonMulticast   = "a multicast address"
	reasonReserved    = "a reserved address"
)

// Order matters: the first matching rule names the reason, so the narrow
// metadata addresses come before the ranges that contain them.
var ipv4Rules = concat(
	rules(reasonMetadata,
		"169.254.169.254/32", // AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
		"169.254.170.2/32",   // AWS ECS task metadata
		"100.100.100.200/32", // Alibaba Cloud
		"168.63.129.16/32",   // Azure WireServer (a public address routed to the host)
		"192.0.0.192/32",     // Oracle Cloud (classic)
	),
	rules("a broadcast address", "255.255.255.255/32"),
	rules(reasonUnspecified, "0.0.0.0/8"),
	rules(reasonLoopback, "127.0.0.0/8"),
	rules(reasonPrivate, "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
	rules("a shared (carrier-grade NAT) address", "100.64.0.0/10"),
	rules(reasonLinkLocal, "169.254.0.0/16"),
	rules("a benchmarking network address", "198.18.0.0/15"),
	rules(reasonMulticast, "224.0.0.0/4"),
	rules(reasonReserved, "240.0.0.0/4"),
)

var ipv6Rules = concat(
	rules(reasonMetadata, "fd00:ec2::254/128"), // AWS IMDS over IPv6
	rules(reasonUnspecified, "::/128"),
	rules(reasonLoopback, "::1/128"),
	rules("an IPv4-compatible IPv6 address (deprecated)", "::/96"),
	rules("a local-use NAT64 address", "64:ff9b:1::/48"),
	rules("a discard-only address", "100::/64"),
	rules(reasonLinkLocal, "fe80::/10"),
	rules("a site-local address (deprecated)", "fec0::/10"),
	rules("a unique local (private) IPv6 address", "fc00::/7"),
	rules(reasonMulticast, "ff00::/8"),
)

var (
	ipv4Translated = netip.MustParsePrefix("::ffff:0:0:0/96") // RFC 2765
	nat64          = netip.MustParsePrefix("64:ff9b::/96")    // RFC 6052
	sixToFour      = netip.MustParsePrefix("2002::/16")       // RFC 3056
	teredo         = netip.MustParsePrefix("2001::/32")       // RFC 4380
	globalUnicast  = netip.MustParsePrefix("2000::/3")
)

func concat(lists ...[]rangeRule) []rangeRule {
	var out []rangeRule
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// forbiddenReason says why addr is off-limits, as a noun phrase ("a loopback
// address"), or returns "" when it may be reached.
func forbiddenReason(addr netip.Addr) string {
	addr = addr.WithZone("")
	switch {
	case !addr.IsValid():
		return "not a valid IP address"
	case addr.Is4():
		return firstMatch(ipv4Rules, addr)
	case addr.Is4In6():
		return embedded(addr.Unmap(), "IPv4-mapped IPv6")
	}
	if r := firstMatch(ipv6Rules, addr); r != "" {
		return r
	}
	b := addr.As16()
	switch {
	case ipv4Translated.Contains(addr):
		return embedded(netip.AddrFrom4([4]byte(b[12:16])), "IPv4-translated IPv6")
	case nat64.Contains(addr):
		return embedded(netip.AddrFrom4([4]byte(b[12:16])), "NAT64 IPv6")
	case sixToFour.Contains(addr):
		return embedded(netip.AddrFrom4([4]byte(b[2:6])), "6to4 IPv6")
	case teredo.Contains(addr):
		// The client address is stored inverted in the last 32 bits.
		client := [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}
		return embedded(netip.AddrFrom4(client), "Teredo IPv6")
	case !globalUnicast.Contains(addr):
		return "a reserved IPv6 address"
	}
	return ""
}

func firstMatch(list []rangeRule, addr netip.Addr) string {
	for _, r := range list {
		if r.prefix.Contains(addr) {
			return r.reason
		}
	}
	return ""
}

func embedded(v4 netip.Addr, form string) string {
	r := firstMatch(ipv4Rules, v4)
	if r == "" {
		return ""
	}
	return fmt.Sprintf("%s (%s, written in %s form)", r, v4, form)
}

// addressPolicy is the rule one Client applies.
type addressPolicy struct {
	allowPrivate bool
	// publicNets are treated as public even when the rule forbids them. Tests
	// only: it lets 127.0.0.2 stand for "the internet" while 127.0.0.1 stays
	// forbidden. Never set from configuration.
	publicNets []netip.Prefix
}

// reason is forbiddenReason under this policy.
func (p addressPolicy) reason(addr netip.Addr) string {
	if p.allowPrivate {
		return ""
	}
	for _, n := range p.publicNets {
		if n.Contains(addr.WithZone("").Unmap()) {
			return ""
		}
	}
	return forbiddenReason(addr)
}

// checkAddr returns a *ForbiddenError when addr, reached as host, is off-limits.
func (p addressPolicy) checkAddr(host string, addr netip.Addr) error {
	if r := p.reason(addr); r != "" {
		return &ForbiddenError{Host: host, IP: net.IP(addr.WithZone("").AsSlice()), Reason: r}
	}
	return nil
}

// CheckURL is the submit-time check: it refuses what is visibly forbidden
// without resolving DNS. That is a scheme other than http and https, a
// missing host, user info in the URL, and, unless allowPrivate, a forbidden
// IP literal in any spelling (including the legacy inet_aton forms 127.1,
// 2130706433, 0x7f000001 and 0177.0.0.1, which other resolvers and browsers
// read as IP addresses), any IP literal written in such a legacy form, and
// the loopback and metadata names (localhost, *.localhost, ip6-localhost,
// metadata.google.internal, ...). The error is a *ForbiddenError.
//
// A URL that passes may still resolve to a forbidden address: the Client
// checks again when it connects.
func CheckURL(rawURL string, allowPrivate bool) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return &ForbiddenError{message: "the URL cannot be parsed: " + unwrapURLError(err)}
	}
	return addressPolicy{allowPrivate: allowPrivate}.checkURL(u)
}

func unwrapURLError(err error) string {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err.Error()
	}
	return err.Error()
}

func (p addressPolicy) checkURL(u *url.URL) error {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		msg := "the URL has no scheme; only http and https URLs are allowed"
		if scheme != "" {
			msg = fmt.Sprintf("the URL scheme %q is not allowed; only http and https URLs are", scheme)
		}
		return &ForbiddenError{Host: u.Hostname(), Reason: "a scheme other than http or https", message: msg}
	}
	host := u.Hostname()
	if host == "" {
		return &ForbiddenError{Reason: "no host", message: "the URL has no host"}
	}
	if u.User != nil {
		return &ForbiddenError{Host: host, Reason: "user info in the URL",
			message: "the URL contains a user name or password, which this service does not send"}
	}
	return p.checkHost(host)
}

// checkHost applies the address rule to a URL's host, without DNS.
func (p addressPolicy) checkHost(host string) error {
	if p.allowPrivate {
		return nil
	}
	name := host
	if !isASCII(name) {
		// Browsers map e.g. full-width digits and letters to ASCII first.
		if ascii, err := idna.Lookup.ToASCII(name); err == nil {
			name = ascii
		}
	}
	name = strings.ToLower(strings.TrimRight(name, "."))

	if addr, err := netip.ParseAddr(name); err == nil {
		return p.checkAddr(host, addr)
	}
	if addr, ok := parseLegacyIPv4(name); ok {
		if err := p.checkAddr(host, addr); err != nil {
			return err
		}
		// Parsers disagree on these forms (is 010.0.0.1 8.0.0.1 or
		// 10.0.0.1?), so none of them is trusted.
		return &ForbiddenError{Host: host, IP: net.IP(addr.AsSlice()),
			Reason: "an IP address written in an unusual form"}
	}
	if r := forbiddenName(name); r != "" {
		return &ForbiddenError{Host: host, Reason: r}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

var loopbackNames = map[string]bool{
	"localhost":               true,
	"localhost.localdomain":   true,
	"localhost4":              true,
	"localhost4.localdomain4": true,
	"localhost6":              true,
	"localhost6.localdomain6": true,
	"ip6-localhost":           true,
	"ip6-loopback":            true,
}

var metadataNames = map[string]bool{
	"metadata.google.internal":   true,
	"metadata.goog":              true,
	"instance-data":              true,
	"instance-data.ec2.internal": true,
}

// forbiddenName says why a (lower-case, no trailing dot) host name is
// off-limits, or returns "".
func forbiddenName(name string) string {
	switch {
	case loopbackNames[name] || strings.HasSuffix(name, ".localhost"):
		return "a loopback name"
	case metadataNames[name]:
		return "a cloud metadata name"
	}
	return ""
}

// parseLegacyIPv4 parses the forms inet_aton(3) and the WHATWG URL standard
// accept: one to four dot-separated parts, each decimal, octal (leading 0) or
// hexadecimal (leading 0x), the last part filling the remaining bytes
// (127.1 = 127.0.0.1, 2130706433 = 127.0.0.1). Go's own parsers reject them.
func parseLegacyIPv4(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var v uint64
	for i, p := range parts {
		n, ok := parseLegacyPart(p)
		if !ok {
			return netip.Addr{}, false
		}
		if i < len(parts)-1 {
			if n > 0xff {
				return netip.Addr{}, false
			}
			v = v<<8 | n
			continue
		}
		rest := uint(8 * (4 - i)) // bits the last part fills
		if n >= 1<<rest {
			return netip.Addr{}, false
		}
		v = v<<rest | n
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func parseLegacyPart(p string) (uint64, bool) {
	base := 10
	switch {
	case p == "":
		return 0, false
	case len(p) >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X'):
		base, p = 16, p[2:]
		if p == "" {
			return 0, true // "0x" is 0 for inet_aton and WHATWG alike
		}
	case len(p) >= 2 && p[0] == '0':
		base, p = 8, p[1:]
	}
	n, err := strconv.ParseUint(p, base, 32)
	return n, err == nil
}
