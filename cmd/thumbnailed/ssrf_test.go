package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testnet"
	"github.com/thumbnailed/thumbnailed/safehttp"
)

// The outbound address rule through the real program, with
// THUMBNAILED_ALLOW_PRIVATE_NETWORKS=false (issue 5, item 5). What is
// visibly forbidden is refused at submit (server/ssrf_test.go has every
// spelling); here, what only shows when the name is resolved or a redirect
// is followed fails the job with source_forbidden, or the callback with
// callback_forbidden, and the forbidden server never hears a thing.

var ssrfEnv = map[string]string{"THUMBNAILED_ALLOW_PRIVATE_NETWORKS": "false"}

func ssrfServeFile(t *testing.T, name string) http.HandlerFunc {
	b := readFile(t, name)
	return func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(b) }
}

// ssrfInsideName is a host name that is not visibly forbidden (CheckURL
// passes it) but that this machine resolves only to forbidden addresses, one
// of which is its own: its host name, from /etc/hosts (127.0.0.1 or 127.0.1.1
// on most Linux machines, the container's private address in Docker). It
// stands for "a public-looking name whose DNS points inside", as these tests
// have no DNS server to lie with. addr is the address to put a server on; on
// failure, why reports what is missing.
func ssrfInsideName() (name, addr, why string) {
	name, err := os.Hostname()
	if err != nil {
		return "", "", fmt.Sprintf("no host name: %v", err)
	}
	if err := safehttp.CheckURL("http://"+name+"/", false); err != nil {
		return "", "", fmt.Sprintf("the host name %q is refused at submit already: %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
	if err != nil || len(addrs) == 0 {
		return "", "", fmt.Sprintf("the host name %q does not resolve here: %v", name, err)
	}
	for _, a := range addrs {
		if !safehttp.IsForbiddenIP(a.AsSlice()) {
			return "", "", fmt.Sprintf("the host name %q resolves to %v, which is not all forbidden", name, addrs)
		}
	}
	for _, a := range addrs {
		if l, err := net.Listen("tcp", net.JoinHostPort(a.Unmap().String(), "0")); err == nil {
			l.Close()
			return name, a.Unmap().String(), ""
		}
	}
	return "", "", fmt.Sprintf("the host name %q resolves to %v, none of which this machine can listen on", name, addrs)
}

// ssrfPublicAddr is an address of this machine that the rule treats as public,
// so that a server on it stands for "the internet". It skips the test when
// every local address is forbidden (loopback, private, ULA, ...).
func ssrfPublicAddr(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skipf("no interface addresses: %v", err)
	}
	for _, a := range addrs {
		prefix, err := netip.ParsePrefix(a.String())
		if err != nil || !prefix.Addr().Is4() {
			continue
		}
		if ip := prefix.Addr(); !safehttp.IsForbiddenIP(ip.AsSlice()) {
			return ip.String()
		}
	}
	t.Skipf("this machine has no address outside the forbidden ranges (%v)", addrs)
	return ""
}

func TestSSRFLoopbackServerIsRefusedAtSubmitForBothFields(t *testing.T) {
	svc := startService(t, "all", ssrfEnv)
	target := testnet.Serve(t, "127.0.0.1", ssrfServeFile(t, "go-video-001.jpeg"))
	port := target.Port()
	image := readFile(t, "go-video-001.jpeg")

	for _, host := range []string{
		"127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "localhost",
		"[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:7f00:1]", "[::127.0.0.1]",
		"0.0.0.0", "[::]",
	} {
		u := "http://" + host + ":" + port + "/cat.jpg"
		t.Run(u, func(t *testing.T) {
			is := is.New(t)
			r := svc.Submit(t, map[string]any{"url": u, "width": 64}, nil)
			is.Equal(r.Status, http.StatusUnprocessableEntity)
			p := r.Problem(t)
			is.Equal(len(p.Errors), 1)
			is.Equal(p.Errors[0].Field, "url")

			r = svc.Upload(t, image, map[string]string{"width": "64", "callback_url": u}, nil)
			is.Equal(r.Status, http.StatusUnprocessableEntity)
			p = r.Problem(t)
			is.Equal(len(p.Errors), 1)
			is.Equal(p.Errors[0].Field, "callback_url")
		})
	}
	is.New(t).Equal(target.Requests(), int64(0)) // nothing reached the server
}

func TestSSRFNameResolvingInsideFailsAtFetchWithoutAConnection(t *testing.T) {
	name, addr, why := ssrfInsideName()
	if name == "" {
		t.Skip(why)
	}
	svc := startService(t, "all", ssrfEnv)
	target := testnet.Serve(t, addr, ssrfServeFile(t, "go-video-001.jpeg"))
	u := "http://" + name + ":" + target.Port() + "/cat.jpg"

	t.Run("as the source", func(t *testing.T) {
		is := is.New(t)
		job := svc.urlJob(t, u, 64) // nothing visible at submit
		is.Equal(job.Status, "failed")
		is.Equal(job.Error.Code, "source_forbidden")
		t.Logf("%s: %s", u, job.Error.Message)
		is.True(strings.Contains(job.Error.Message, "which this service does not connect to")) // the message says why
	})

	t.Run("as the callback", func(t *testing.T) {
		is := is.New(t)
		id := accepted(t, svc.Upload(t, readFile(t, "go-video-001.jpeg"), map[string]string{"width": "64", "callback_url": u}, nil)).ID
		is.Equal(svc.WaitEnded(t, id, jobTimeout).Status, "succeeded")
		ds := svc.WaitDelivered(t, id, pushTimeout).Deliveries
		is.Equal(len(ds), 1)
		is.Equal(ds[0].Channel, "callback")
		is.Equal(ds[0].Status, "failed") // for good, not retried
		is.Equal(ds[0].Attempts, 1)
		t.Logf("callback to %s: %s", u, ds[0].LastError)
		is.True(strings.Contains(ds[0].LastError, "not allowed"))
	})

	is.New(t).Equal(target.Requests(), int64(0)) // no connection was made
}

func TestSSRFRedirectsAreCheckedAtFetch(t *testing.T) {
	public := ssrfPublicAddr(t)
	name, addr, why := ssrfInsideName()
	svc := startService(t, "all", ssrfEnv)
	inside := testnet.Serve(t, "127.0.0.1", ssrfServeFile(t, "go-video-001.jpeg"))
	insideByName := inside // where the host name leads, when it leads somewhere this machine listens
	if name != "" && addr != "127.0.0.1" {
		insideByName = testnet.Serve(t, addr, ssrfServeFile(t, "go-video-001.jpeg"))
	}
	image := readFile(t, "go-video-001.jpeg")
	outside := testnet.Serve(t, public, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/cat.jpg":
			_, _ = w.Write(image)
		case r.URL.Path == "/to-loopback":
			http.Redirect(w, r, "http://127.0.0.1:"+inside.Port()+"/cat.jpg", http.StatusFound)
		case r.URL.Path == "/to-mapped-loopback":
			http.Redirect(w, r, "http://[::ffff:7f00:1]:"+inside.Port()+"/cat.jpg", http.StatusTemporaryRedirect)
		case r.URL.Path == "/to-name":
			http.Redirect(w, r, "http://"+name+":"+insideByName.Port()+"/cat.jpg", http.StatusMovedPermanently)
		case r.URL.Path == "/to-metadata":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		case r.URL.Path == "/to-file":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		case strings.HasPrefix(r.URL.Path, "/hop/"): // redirects for ever
			n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hop/"))
			http.Redirect(w, r, fmt.Sprintf("/hop/%d", n+1), http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	})
	t.Logf("%s stands for the internet; %s for the inside", outside.URL, inside.URL)

	t.Run("a public source is fetched", func(t *testing.T) {
		// The control: with private networks refused, the program still
		// fetches from an address the rule allows.
		is := is.New(t)
		job := svc.urlJob(t, outside.URL+"/cat.jpg", 64)
		is.Equal(job.Status, "succeeded")
	})
	for _, path := range []string{"/to-loopback", "/to-mapped-loopback", "/to-name", "/to-metadata", "/to-file"} {
		t.Run("redirect "+path, func(t *testing.T) {
			if path == "/to-name" && name == "" {
				t.Skip(why)
			}
			is := is.New(t)
			before := outside.Requests()
			job := svc.urlJob(t, outside.URL+path, 64)
			is.Equal(job.Status, "failed")
			is.Equal(job.Error.Code, "source_forbidden")
			t.Logf("%s: %s", path, job.Error.Message)
			is.Equal(outside.Requests()-before, int64(1)) // the redirect itself, not retried
		})
	}
	t.Run("more than 5 redirects", func(t *testing.T) {
		is := is.New(t)
		before := outside.Requests()
		job := svc.urlJob(t, outside.URL+"/hop/0", 64)
		is.Equal(job.Status, "failed")
		is.Equal(job.Error.Code, "source_unreachable")
		is.True(strings.Contains(job.Error.Message, "redirected too many times"))
		is.Equal(outside.Requests()-before, int64(6)) // the request and 5 redirects
	})
	t.Run("a public callback is delivered", func(t *testing.T) {
		is := is.New(t)
		id := accepted(t, svc.Upload(t, image, map[string]string{"width": "64", "callback_url": outside.URL + "/cat.jpg"}, nil)).ID
		ds := svc.WaitDelivered(t, id, pushTimeout).Deliveries
		is.Equal(len(ds), 1)
		is.Equal(ds[0].Status, "delivered")
	})

	is.New(t).Equal(inside.Requests()+insideByName.Requests(), int64(0)) // the inside never heard a thing
}
