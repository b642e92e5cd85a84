package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testnet"
)

// The outbound address rule at submit (DESIGN.md, "Outbound address rule"):
// a source or callback URL that is visibly forbidden is refused with a 422
// naming its field, and nothing is stored, queued or connected to. The
// dial-time half of the rule is tested in safehttp (resolver-based rebinding
// and redirects) and, through the real program, in cmd/thumbnailed/ssrf_test.go.

// forbiddenURLs are URLs strangers may try, by what they are aiming at. %s
// is the port of a live server that counts requests, so a URL that slipped
// through and was fetched would show.
var forbiddenURLs = map[string][]string{
	"loopback": {
		"http://127.0.0.1:%s/cat.jpg",
		"http://127.1:%s/cat.jpg",
		"http://127.0.1:%s/cat.jpg",
		"http://2130706433:%s/cat.jpg",
		"http://0x7f000001:%s/cat.jpg",
		"http://0x7f.0.0.1:%s/cat.jpg",
		"http://0177.0.0.1:%s/cat.jpg",
		"http://017700000001:%s/cat.jpg",
		"http://127.000.000.001:%s/cat.jpg",
		"http://127.0.0.1.:%s/cat.jpg",
		"http://127.255.255.254:%s/cat.jpg",
		"HTTP://127.0.0.1:%s/cat.jpg",
		"https://127.0.0.1:%s/cat.jpg",
		"http://localhost:%s/cat.jpg",
		"http://LocalHost:%s/cat.jpg",
		"http://localhost.:%s/cat.jpg",
		"http://images.localhost:%s/cat.jpg",
		"http://localhost.localdomain:%s/cat.jpg",
		"http://ip6-localhost:%s/cat.jpg",
		"http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ:%s/cat.jpg", // full-width circled letters, mapped to "localhost"
		"http://１２７.０.０.１:%s/cat.jpg", // full-width digits
		"http://[::1]:%s/cat.jpg",
		"http://[0:0:0:0:0:0:0:1]:%s/cat.jpg",
		"http://[::1%%25lo]:%s/cat.jpg",
		"http://[::ffff:127.0.0.1]:%s/cat.jpg",
		"http://[::ffff:7f00:1]:%s/cat.jpg",
		"http://[0:0:0:0:0:ffff:7f00:1]:%s/cat.jpg",
		"http://[::127.0.0.1]:%s/cat.jpg",        // IPv4-compatible
		"http://[::ffff:0:127.0.0.1]:%s/cat.jpg", // IPv4-translated
		"http://[64:ff9b::127.0.0.1]:%s/cat.jpg", // NAT64
		"http://[2002:7f00:1::]:%s/cat.jpg",      // 6to4
	},
	"unspecified": {
		"http://0.0.0.0:%s/cat.jpg",
		"http://0:%s/cat.jpg",
		"http://[::]:%s/cat.jpg",
		"http://[::ffff:0.0.0.0]:%s/cat.jpg",
	},
	"private": {
		"http://10.0.0.1/cat.jpg",
		"http://10.255.255.255/cat.jpg",
		"http://172.16.0.1/cat.jpg",
		"http://172.31.255.255/cat.jpg",
		"http://192.168.0.1/cat.jpg",
		"http://192.168.1.1:8080/cat.jpg",
		"http://012.0.0.1/cat.jpg", // 10.0.0.1 in octal
		"http://100.64.0.1/cat.jpg",
		"http://[fd00::1]/cat.jpg",
		"http://[fc00::1]/cat.jpg",
		"http://[::ffff:10.0.0.1]/cat.jpg",
		"http://[::ffff:192.168.0.1]/cat.jpg",
	},
	"link-local and metadata": {
		"http://169.254.169.254/latest/meta-data/iam/security-credentials/",
		"http://169.254.0.1/cat.jpg",
		"http://2852039166/latest/meta-data/", // 169.254.169.254 as one number
		"http://[::ffff:169.254.169.254]/latest/meta-data/",
		"http://169.254.170.2/v2/credentials",
		"http://100.100.100.200/latest/meta-data/",
		"http://[fd00:ec2::254]/latest/meta-data/",
		"http://[fe80::1]/cat.jpg",
		"http://[fe80::1%25eth0]/cat.jpg",
		"http://metadata.google.internal/computeMetadata/v1/",
	},
	"scheme": {
		"file:///etc/passwd",
		"file://localhost/etc/passwd",
		"gopher://127.0.0.1:%s/_GET%%20/",
		"ftp://example.com/cat.jpg",
		"data:image/png;base64,iVBORw0KGgo=",
		"javascript:alert(1)",
		"dict://127.0.0.1:%s/info",
		"ldap://127.0.0.1:%s/",
		"//example.com/cat.jpg",
		"example.com/cat.jpg",
	},
	"shape": {
		"http:///cat.jpg",
		"http://user:secret@example.com/cat.jpg",
		"http://example.com@127.0.0.1:%s/cat.jpg",
		"http://127.0.0.1:%s@example.com/cat.jpg",
		"http://%%31%%32%%37.0.0.1:%s/cat.jpg", // percent-encoded 127
	},
}

// countingServer is a server on loopback that answers 200 and counts every
// request it is sent.
func countingServer(t *testing.T) *testnet.Server {
	return testnet.Serve(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
}

func withPort(raw, port string) string {
	if strings.Count(raw, "%s") == 0 {
		return strings.ReplaceAll(raw, "%%", "%")
	}
	return fmt.Sprintf(raw, port)
}

func TestSSRFForbiddenSourceAndCallbackURLsAreRefusedAtSubmit(t *testing.T) {
	api := newTestAPI(t, Config{AllowPrivateNetworks: false})
	target := countingServer(t)
	port := target.Port()
	image := tinyJPEG(t)

	n, total := 0, 0
	for _, urls := range forbiddenURLs {
		total += len(urls)
	}
	for aim, urls := range forbiddenURLs {
		for _, raw := range urls {
			target := withPort(raw, port)
			t.Run(aim+"/"+target, func(t *testing.T) {
				n++
				// As the source, in JSON.
				onlyField(t, api.Submit(t, map[string]any{"url": target, "width": 64}, nil), "url")
				// As the source, in a form.
				onlyField(t, api.Upload(t, nil, map[string]string{"url": target, "width": "64"}, nil), "url")
				// As the callback of a good URL source, in JSON.
				onlyField(t, api.Submit(t, map[string]any{"url": "https://images.example.com/cat.jpg", "width": 64, "callback_url": target}, nil), "callback_url")
				// As the callback of an upload.
				onlyField(t, api.Upload(t, image, map[string]string{"width": "64", "callback_url": target}, nil), "callback_url")
			})
		}
	}
	is := is.New(t)
	is.Equal(n, total)                    // every spelling was tried
	is.Equal(target.Requests(), int64(0)) // and none reached the server
	noJobs(t, api)                        // nor was stored or queued
}

func TestSSRFPublicURLsPassTheSubmitCheck(t *testing.T) {
	// The control: the refusals above are about the address, not about URLs.
	is := is.New(t)
	api := newTestAPI(t, Config{AllowPrivateNetworks: false})
	for _, u := range []string{
		"https://images.example.com/cat.jpg",
		"http://93.184.215.14/cat.jpg",
		"http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/cat.jpg",
		"https://images.example.com:8443/a/b.jpg?size=large#top",
	} {
		r := api.Submit(t, map[string]any{"url": u, "width": 64, "callback_url": u}, nil)
		is.Equal(r.Status, http.StatusAccepted) // a public URL is accepted
	}
}

func TestSSRFAllowPrivateNetworksStillRefusesOtherSchemes(t *testing.T) {
	// THUMBNAILED_ALLOW_PRIVATE_NETWORKS=true lifts the address rule only.
	is := is.New(t)
	api := newTestAPI(t, Config{AllowPrivateNetworks: true})
	target := countingServer(t)
	port := target.Port()
	for _, u := range forbiddenURLs["scheme"] {
		onlyField(t, api.Submit(t, map[string]any{"url": withPort(u, port), "width": 64}, nil), "url")
	}
	r := api.Submit(t, map[string]any{"url": "http://127.0.0.1:" + port + "/cat.jpg", "width": 64}, nil)
	is.Equal(r.Status, http.StatusAccepted) // loopback is allowed in this mode
	is.Equal(target.Requests(), int64(0))   // and the API itself never fetches
}
