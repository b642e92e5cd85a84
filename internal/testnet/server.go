package testnet

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// Server is an httptest server on a chosen local address (127.0.0.1, or
// another one a test treats differently, such as 127.0.0.2 declared public or
// the machine's own address) that counts the requests reaching it: a test of
// the outbound address rule shows that a forbidden server never heard a thing.
type Server struct {
	*httptest.Server
	requests atomic.Int64
}

// Serve starts a Server on addr, on a free port; it closes when the test ends.
func Serve(t testing.TB, addr string, h http.HandlerFunc) *Server {
	t.Helper()
	s := &Server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h(w, r)
	}))
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatalf("listening on %s: %v", addr, err)
	}
	s.Listener.Close()
	s.Listener = l
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// Requests is how many requests have reached the server so far.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Port is the port the server listens on.
func (s *Server) Port() string {
	_, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	return port
}
