package safehttp

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/matryer/is"
)

func TestIsForbiddenIP(t *testing.T) {
	tests := []struct {
		ip        string
		forbidden bool
	}{
		// loopback
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"::1", true},
		// private, shared
		{"10.0.0.5", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"192.168.1.1", true},
		{"100.64.0.1", true},
		{"100.127.255.255", true},
		// link-local
		{"169.254.1.1", true},
		{"fe80::1", true},
		{"febf::1", true},
		// unspecified
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"::", true},
		// multicast, broadcast, reserved
		{"224.0.0.1", true},
		{"239.255.255.250", true},
		{"255.255.255.255", true},
		{"240.0.0.1", true},
		{"198.18.0.1", true},
		{"ff02::1", true},
		{"fec0::1", true},
		{"100::1", true},
		// IPv6 ULA
		{"fd00::1", true},
		{"fc00::1", true},
		// cloud metadata
		{"169.254.169.254", true},
		{"169.254.170.2", true},
		{"fd00:ec2::254", true},
		{"100.100.100.200", true},
		{"168.63.129.16", true},
		// IPv4-mapped and IPv4-translated
		{"::ffff:127.0.0.1", true},
		{"::ffff:7f00:1", true},
		{"::ffff:10.0.0.5", true},
		{"::ffff:169.254.169.254", true},
		{"::ffff:0.0.0.0", true},
		{"::ffff:0:127.0.0.1", true},
		// IPv4-compatible (deprecated, all refused)
		{"::127.0.0.1", true},
		{"::8.8.8.8", true},
		// NAT64
		{"64:ff9b::127.0.0.1", true},
		{"64:ff9b::a00:5", true},
		{"64:ff9b::169.254.169.254", true},
		{"64:ff9b:1::1", true},
		// 6to4
		{"2002:7f00:1::", true},
		{"2002:a00:5::1", true},
		{"2002:a9fe:a9fe::", true},
		// Teredo with an inverted loopback client address
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", true},
		// allowed public addresses
		{"8.8.8.8", false},
		{"1.1.1.1", false},
		{"93.184.216.34", false},
		{"172.32.0.1", false},
		{"100.128.0.1", false},
		{"2606:4700::1", false},
		{"2a00:1450:4001:80b::200e", false},
		{"::ffff:8.8.8.8", false},
		{"64:ff9b::8.8.8.8", false},
		{"2002:808:808::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			is := is.New(t)
			ip := net.ParseIP(tt.ip)
			is.True(ip != nil) // test address parses
			is.Equal(IsForbiddenIP(ip), tt.forbidden)
		})
	}
	t.Run("nil and malformed", func(t *testing.T) {
		is := is.New(t)
		is.True(IsForbiddenIP(nil))
		is.True(IsForbiddenIP(net.IP{1, 2, 3}))
	})
}

func TestForbiddenReasonNamesTheCategory(t *testing.T) {
	tests := map[string]string{
		"10.0.0.5":             "a private network address",
		"127.0.0.1":            "a loopback address",
		"169.254.169.254":      "a cloud metadata address",
		"::ffff:127.0.0.1":     "a loopback address (127.0.0.1, written in IPv4-mapped IPv6 form)",
		"2002:a00:5::1":        "a private network address (10.0.0.5, written in 6to4 IPv6 form)",
		"fd00::1":              "a unique local (private) IPv6 address",
		"64:ff9b::169.254.1.1": "a link-local address (169.254.1.1, written in NAT64 IPv6 form)",
	}
	for ip, want := range tests {
		is := is.New(t)
		is.Equal(forbiddenReason(netip.MustParseAddr(ip)), want)
	}
}

func TestCheckURL(t *testing.T) {
	forbidden := []string{
		// loopback in every spelling
		"http://127.0.0.1/x.jpg",
		"http://127.0.0.1./x.jpg",
		"http://127.1/x.jpg",
		"http://127.0.1/x.jpg",
		"http://2130706433/x.jpg",
		"http://0x7f000001/x.jpg",
		"http://0X7F.1/x.jpg",
		"http://0177.0.0.1/x.jpg",
		"http://0177.0000.0000.0001/x.jpg",
		"http://127.000.000.001/x.jpg",
		"http://localhost/x.jpg",
		"http://localhost:8080/x.jpg",
		"http://LOCALHOST./x.jpg",
		"http://foo.localhost/x.jpg",
		"http://localhost.localdomain/x.jpg",
		"http://ip6-localhost/x.jpg",
		"http://[::1]/x.jpg",
		"http://[::1]:8080/x.jpg",
		"http://[::ffff:127.0.0.1]/x.jpg",
		"http://[::ffff:7f00:1]/x.jpg",
		"http://[0:0:0:0:0:ffff:127.0.0.1]/x.jpg",
		"http://１２７.０.０.１/x.jpg", // full-width digits, as browsers map them
		// unspecified
		"http://0.0.0.0/x.jpg",
		"http://0/x.jpg",
		"http://[::]/x.jpg",
		// private ranges
		"http://10.0.0.5/x.jpg",
		"http://172.16.3.4/x.jpg",
		"http://192.168.0.1/x.jpg",
		"http://100.64.0.1/x.jpg",
		"http://012.0.0.1/x.jpg",  // 10.0.0.1 or 8.0.0.1 depending on who reads it
		"http://3232235521/x.jpg", // 192.168.0.1
		// link-local and metadata
		"http://169.254.0.1/x.jpg",
		"http://169.254.169.254/latest/meta-data/",
		"http://[fe80::1%25eth0]/x.jpg",
		"http://[fd00:ec2::254]/",
		"http://100.100.100.200/",
		"http://metadata.google.internal/computeMetadata/v1/",
		// IPv6 ULA
		"http://[fd00::1]/x.jpg",
		// a public address in an ambiguous spelling
		"http://0x08080808/x.jpg",
		// not http(s)
		"file:///etc/passwd",
		"gopher://example.com/1",
		"ftp://example.com/cat.jpg",
		"javascript:alert(1)",
		"data:image/png;base64,iVBORw0KGgo=",
		"example.com/cat.jpg",
		// no host
		"http:///cat.jpg",
		"https:cat.jpg",
		// user info
		"https://user:pass@example.com/cat.jpg",
		"https://user@example.com/cat.jpg",
		"https://example.com@127.0.0.1/cat.jpg",
		// unparsable
		"http://[::1/x.jpg",
	}
	for _, u := range forbidden {
		t.Run(u, func(t *testing.T) {
			is := is.New(t)
			err := CheckURL(u, false)
			var fe *ForbiddenError
			is.True(errors.As(err, &fe)) // refused with *ForbiddenError
			is.True(fe.Error() != "")
		})
	}

	allowed := []string{
		"https://example.com/cat.jpg",
		"http://93.184.216.34/x",
		"HTTPS://Example.COM:8443/cat.jpg?size=large",
		"http://[2606:4700::1]/x",
		"https://localhost.example.com/x", // only the name itself and *.localhost are visibly local
		"https://1.example/x",
	}
	for _, u := range allowed {
		t.Run(u, func(t *testing.T) {
			is := is.New(t)
			is.NoErr(CheckURL(u, false))
		})
	}
}

func TestCheckURLWithAllowPrivateStillChecksTheShape(t *testing.T) {
	is := is.New(t)
	for _, u := range []string{"http://127.0.0.1/x", "http://localhost:8080/x", "http://[::1]/x", "http://10.0.0.5/x", "http://0x7f000001/"} {
		is.NoErr(CheckURL(u, true)) // private allowed
	}
	for _, u := range []string{"file:///etc/passwd", "ftp://127.0.0.1/x", "http:///x", "http://u:p@127.0.0.1/"} {
		is.True(CheckURL(u, true) != nil) // shape still checked
	}
}

func TestForbiddenErrorMessages(t *testing.T) {
	is := is.New(t)
	err := &ForbiddenError{Host: "internal.example", IP: net.ParseIP("10.0.0.5"), Reason: "a private network address"}
	is.Equal(err.Error(), `the address 10.0.0.5 (of "internal.example") is a private network address, which this service does not connect to`)

	is.Equal(CheckURL("http://127.1/", false).Error(),
		`the address 127.0.0.1 (of "127.1") is a loopback address, which this service does not connect to`)
	is.Equal(CheckURL("http://[::1]/", false).Error(),
		`the address ::1 is a loopback address, which this service does not connect to`)
	is.Equal(CheckURL("http://Foo.LOCALHOST./", false).Error(),
		`the host "Foo.LOCALHOST." is a loopback name, which this service does not connect to`)
	is.Equal(CheckURL("ftp://example.com/", false).Error(),
		`the URL scheme "ftp" is not allowed; only http and https URLs are`)
	is.True(strings.Contains(CheckURL("https://a:b@example.com/", false).Error(), "user name or password"))
}

func TestParseLegacyIPv4(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = not an IPv4 address
	}{
		{"127.1", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"2130706433", "127.0.0.1"},
		{"0x7f000001", "127.0.0.1"},
		{"0x7f.0x0.0x0.0x1", "127.0.0.1"},
		{"0177.0.0.1", "127.0.0.1"},
		{"017700000001", "127.0.0.1"},
		{"10.0.0.5", "10.0.0.5"},
		{"0", "0.0.0.0"},
		{"0x", "0.0.0.0"},
		{"1.2.3.4.5", ""},
		{"256.0.0.1", ""},
		{"1.2.3.256", ""},
		{"1.2.65536", ""},
		{"4294967296", ""},
		{"08.0.0.1", ""},
		{"0xg", ""},
		{"1..2", ""},
		{"example.com", ""},
		{"-1", ""},
		{"+1", ""},
	}
	for _, tt := range tests {
		is := is.New(t)
		got, ok := parseLegacyIPv4(tt.in)
		if tt.want == "" {
			is.True(!ok) // not an address
			continue
		}
		is.True(ok)
		is.Equal(got.String(), tt.want)
	}
}
