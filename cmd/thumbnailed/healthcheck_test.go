package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/matryer/is"
)

func TestHealthURL(t *testing.T) {
	for addr, want := range map[string]string{
		":8080":          "http://127.0.0.1:8080/healthz",
		"0.0.0.0:5040":   "http://127.0.0.1:5040/healthz",
		"[::]:8080":      "http://127.0.0.1:8080/healthz",
		"127.0.0.1:5040": "http://127.0.0.1:5040/healthz",
		"[::1]:9000":     "http://[::1]:9000/healthz",
	} {
		got, err := healthURL(addr)
		if err != nil || got != want {
			t.Errorf("healthURL(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	if _, err := healthURL("8080"); err == nil {
		t.Error("healthURL(\"8080\") accepted an address without a port")
	}
}

func TestHealthcheck(t *testing.T) {
	is := is.New(t)
	var healthy atomic.Bool
	healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || !healthy.Load() {
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	is.NoErr(healthcheck(nil, env(map[string]string{"THUMBNAILED_ADDR": addr})))                     // the service answers
	is.NoErr(healthcheck([]string{"webui"}, env(map[string]string{"THUMBNAILED_WEBUI_ADDR": addr}))) // the web UI answers
	is.True(healthcheck([]string{"webui"}, env(map[string]string{"THUMBNAILED_ADDR": addr})) != nil) // the web UI has its own address
	is.True(healthcheck([]string{"bogus"}, env(map[string]string{"THUMBNAILED_ADDR": addr})) != nil) // usage error
	healthy.Store(false)
	is.True(healthcheck(nil, env(map[string]string{"THUMBNAILED_ADDR": addr})) != nil) // a 503 is unhealthy
	srv.Close()
	is.True(healthcheck(nil, env(map[string]string{"THUMBNAILED_ADDR": addr})) != nil) // nothing listening is unhealthy
}
