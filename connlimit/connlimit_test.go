package connlimit_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/connlimit"
)

func TestSlowlorisIsClosedAfterHeaderTimeout(t *testing.T) {
	is := is.New(t)
	limits := connlimit.Limits{MaxConnections: 8, IdleTimeout: 10 * time.Second, HeaderTimeout: 300 * time.Millisecond}
	l, addr := startServer(t, limits, healthz())

	// Half a header on a new connection; nothing at all on another; half a
	// header on a keep-alive connection, after one whole request.
	half := dial(t, addr)
	halfSent := time.Now()
	half.send("GET /healthz HTTP/1.1\r\nHost: thumbnailed.test\r\n")
	silent := dial(t, addr)
	silentSent := time.Now()
	keptAlive := dial(t, addr)
	is.Equal(keptAlive.get("/healthz"), http.StatusOK)
	keptAliveSent := time.Now()
	keptAlive.send("GET /healthz HTTP/1.1\r\nHost: thumb")

	type slowloris struct {
		name string
		conn *rawConn
		sent time.Time
	}
	all := []slowloris{{"half header", half, halfSent}, {"silent", silent, silentSent}, {"half header after keep-alive", keptAlive, keptAliveSent}}
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Go(func() {
			closedAt, got, err := s.conn.waitClosed(2 * time.Second)
			if err != nil {
				t.Errorf("%s: %v", s.name, err)
				return
			}
			waited := closedAt.Sub(s.sent)
			t.Logf("%s: closed after %s", s.name, waited.Round(time.Millisecond))
			if waited < 250*time.Millisecond || waited > time.Second || got != 0 {
				t.Errorf("%s: closed after %s with %d bytes of answer; want about 300ms (HeaderTimeout) and none", s.name, waited, got)
			}
		})
	}
	wg.Wait()

	// A client that sends its header slowly but whole within the timeout is served.
	slow := dial(t, addr)
	for i, part := range []string{"GET /healthz HTTP/1.1\r\n", "Host: thumbnailed.test\r\n", "\r\n"} {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		slow.send(part)
	}
	is.Equal(slow.readStatus(), http.StatusOK)

	waitStats(t, l, connlimit.Stats{Open: 1, Idle: 1, Accepted: 4})
}

func TestIdleKeepAliveIsClosedAfterIdleTimeout(t *testing.T) {
	is := is.New(t)
	limits := connlimit.Limits{MaxConnections: 8, IdleTimeout: 500 * time.Millisecond, HeaderTimeout: 5 * time.Second}
	l, addr := startServer(t, limits, healthz())

	idle := dial(t, addr)
	busy := dial(t, addr)
	is.Equal(idle.get("/healthz"), http.StatusOK)

	// The idle time counts, not the connection's age: a client asking every
	// 50 ms keeps its connection for longer than IdleTimeout.
	start := time.Now()
	var lastAnswer time.Time
	for time.Since(start) < 1200*time.Millisecond {
		time.Sleep(50 * time.Millisecond)
		is.Equal(busy.get("/healthz"), http.StatusOK)
		lastAnswer = time.Now()
	}

	_, got, err := idle.waitClosed(100 * time.Millisecond) // closed while the busy one kept asking
	is.NoErr(err)
	is.Equal(got, 0)

	closedAt, got, err := busy.waitClosed(2 * time.Second)
	is.NoErr(err)
	is.Equal(got, 0)
	waited := closedAt.Sub(lastAnswer)
	t.Logf("busy connection closed %s after its last answer", waited.Round(time.Millisecond))
	is.True(waited > 400*time.Millisecond) // IdleTimeout, counted from a moment before the answer arrived
	is.True(waited < 1500*time.Millisecond)

	waitStats(t, l, connlimit.Stats{Open: 0, Idle: 0, Accepted: 2})
}

func TestLongestIdleIsClosedToAdmitNewClient(t *testing.T) {
	is := is.New(t)
	limits := connlimit.Limits{MaxConnections: 4, IdleTimeout: time.Minute, HeaderTimeout: time.Minute}
	l, addr := startServer(t, limits, healthz())

	c := make([]*rawConn, 6)
	for i := range 4 {
		c[i] = dial(t, addr)
		is.Equal(c[i].get("/healthz"), http.StatusOK)
		waitStats(t, l, connlimit.Stats{Open: i + 1, Idle: i + 1, Accepted: uint64(i + 1)})
	}
	// c0 asks again, so c1 is now the longest idle, although c0 is older.
	is.Equal(c[0].get("/healthz"), http.StatusOK)
	waitStats(t, l, connlimit.Stats{Open: 4, Idle: 4, Accepted: 4})

	c[4] = dial(t, addr)
	is.Equal(c[4].get("/healthz"), http.StatusOK)
	_, got, err := c[1].waitClosed(time.Second)
	is.NoErr(err)
	is.Equal(got, 0)
	waitStats(t, l, connlimit.Stats{Open: 4, Idle: 4, Accepted: 5, Evicted: 1})

	// Idle order is now c2, c3, c0, c4.
	c[5] = dial(t, addr)
	is.Equal(c[5].get("/healthz"), http.StatusOK)
	_, _, err = c[2].waitClosed(time.Second)
	is.NoErr(err)
	for _, i := range []int{0, 3, 4, 5} {
		is.Equal(c[i].get("/healthz"), http.StatusOK) // the others still work
	}
	waitStats(t, l, connlimit.Stats{Open: 4, Idle: 4, Accepted: 6, Evicted: 2})
}

func TestConnectionThatSentNothingIsIdle(t *testing.T) {
	is := is.New(t)
	limits := connlimit.Limits{MaxConnections: 2, IdleTimeout: time.Minute, HeaderTimeout: time.Minute}
	l, addr := startServer(t, limits, healthz())

	silent := dial(t, addr)
	waitStats(t, l, connlimit.Stats{Open: 1, Idle: 1, Accepted: 1})
	served := dial(t, addr)
	is.Equal(served.get("/healthz"), http.StatusOK)

	newcomer := dial(t, addr)
	is.Equal(newcomer.get("/healthz"), http.StatusOK)
	_, _, err := silent.waitClosed(time.Second) // idle since it was accepted: the longest
	is.NoErr(err)
	is.Equal(served.get("/healthz"), http.StatusOK)
	waitStats(t, l, connlimit.Stats{Open: 2, Idle: 2, Accepted: 3, Evicted: 1})
}

func TestActiveConnectionsAreNeverClosedToMakeRoom(t *testing.T) {
	is := is.New(t)
	release := make(chan struct{})
	mux := healthz()
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = io.WriteString(w, "done")
	})
	limits := connlimit.Limits{MaxConnections: 3, IdleTimeout: time.Minute, HeaderTimeout: time.Minute}
	l, addr := startServer(t, limits, mux)

	busy := make([]*rawConn, 3)
	for i := range busy {
		busy[i] = dial(t, addr)
		busy[i].send("GET /slow HTTP/1.1\r\nHost: thumbnailed.test\r\n\r\n")
	}
	waitStats(t, l, connlimit.Stats{Open: 3, Idle: 0, Accepted: 3})

	// Every connection is serving a request: new ones are refused at once.
	for range 2 {
		refused := dial(t, addr)
		refused.send("GET /healthz HTTP/1.1\r\nHost: thumbnailed.test\r\n\r\n")
		sent := time.Now()
		closedAt, got, err := refused.waitClosed(time.Second)
		is.NoErr(err)
		is.Equal(got, 0) // no answer
		t.Logf("refused connection closed %s after its request", closedAt.Sub(sent).Round(time.Microsecond))
	}
	is.Equal(l.Stats(), connlimit.Stats{Open: 3, Idle: 0, Accepted: 3, Refused: 2})

	close(release)
	for _, c := range busy {
		is.Equal(c.readStatus(), http.StatusOK) // the busy requests all complete
	}
	waitStats(t, l, connlimit.Stats{Open: 3, Idle: 3, Accepted: 3, Refused: 2})

	// Once they are idle, a new client gets in again.
	late := dial(t, addr)
	is.Equal(late.get("/healthz"), http.StatusOK)
	waitStats(t, l, connlimit.Stats{Open: 3, Idle: 3, Accepted: 4, Evicted: 1, Refused: 2})
}

func TestHijackedConnectionsLeaveTheAccounting(t *testing.T) {
	is := is.New(t)
	mux := healthz()
	mux.HandleFunc("GET /echo", func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = rw.Flush()
		for {
			line, err := rw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = rw.WriteString(line)
			_ = rw.Flush()
		}
	})
	limits := connlimit.Limits{MaxConnections: 1, IdleTimeout: time.Minute, HeaderTimeout: time.Minute}
	l, addr := startServer(t, limits, mux)

	echo := dial(t, addr)
	is.Equal(echo.get("/echo"), http.StatusSwitchingProtocols)
	waitStats(t, l, connlimit.Stats{Open: 0, Idle: 0, Accepted: 1})

	other := dial(t, addr)
	is.Equal(other.get("/healthz"), http.StatusOK) // the hijacked one does not count against the cap
	echo.send("ping\n")
	is.NoErr(echo.c.SetReadDeadline(time.Now().Add(time.Second)))
	line, err := echo.r.ReadString('\n')
	is.NoErr(err)
	is.Equal(line, "ping\n") // and it is never closed to make room
	waitStats(t, l, connlimit.Stats{Open: 1, Idle: 1, Accepted: 2})
}

func TestApplySetsTimeoutsAndKeepsExistingHook(t *testing.T) {
	is := is.New(t)
	var mu sync.Mutex
	var seen []http.ConnState
	srv := &http.Server{
		Handler: healthz(),
		ConnState: func(_ net.Conn, s http.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, s)
		},
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	is.NoErr(err)
	limits := connlimit.Limits{MaxConnections: 5, IdleTimeout: 7 * time.Second, HeaderTimeout: 3 * time.Second}
	l := connlimit.Apply(srv, raw, limits)
	is.Equal(srv.IdleTimeout, 7*time.Second)
	is.Equal(srv.ReadHeaderTimeout, 3*time.Second)
	serve(t, srv, l)

	c := dial(t, l.Addr().String())
	is.Equal(c.get("/healthz"), http.StatusOK)
	is.NoErr(c.c.Close())
	waitStats(t, l, connlimit.Stats{Accepted: 1})
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	is.Equal(seen, []http.ConnState{http.StateNew, http.StateActive, http.StateIdle, http.StateClosed})
}

func TestNoCapWhenMaxConnectionsIsZero(t *testing.T) {
	is := is.New(t)
	limits := connlimit.Limits{MaxConnections: 0, IdleTimeout: time.Minute, HeaderTimeout: time.Minute}
	l, addr := startServer(t, limits, healthz())
	for range 50 {
		is.Equal(dial(t, addr).get("/healthz"), http.StatusOK)
	}
	waitStats(t, l, connlimit.Stats{Open: 50, Idle: 50, Accepted: 50})
}

func TestTLSConnectionsAreTracked(t *testing.T) {
	is := is.New(t)
	ts := httptest.NewUnstartedServer(healthz())
	limits := connlimit.Limits{MaxConnections: 1, IdleTimeout: time.Minute, HeaderTimeout: time.Minute}
	l := connlimit.Apply(ts.Config, ts.Listener, limits)
	ts.Listener = l
	ts.StartTLS() // wraps l in a tls listener: the hook sees *tls.Conn
	t.Cleanup(ts.Close)

	get := func(client *http.Client) {
		resp, err := client.Get(ts.URL + "/healthz")
		is.NoErr(err)
		_, _ = io.Copy(io.Discard, resp.Body)
		is.NoErr(resp.Body.Close())
		is.Equal(resp.StatusCode, http.StatusOK)
	}
	first := ts.Client()
	get(first)
	waitStats(t, l, connlimit.Stats{Open: 1, Idle: 1, Accepted: 1})

	second := &http.Client{Transport: first.Transport.(*http.Transport).Clone()}
	get(second)
	waitStats(t, l, connlimit.Stats{Open: 1, Idle: 1, Accepted: 2, Evicted: 1})

	// The server's report of the close reaches the accounting too.
	second.CloseIdleConnections()
	waitStats(t, l, connlimit.Stats{Open: 0, Idle: 0, Accepted: 2, Evicted: 1})
}

func TestValidate(t *testing.T) {
	is := is.New(t)
	is.NoErr(connlimit.Limits{MaxConnections: 4096, IdleTimeout: 30 * time.Second, HeaderTimeout: 10 * time.Second}.Validate())
	is.NoErr(connlimit.Limits{MaxConnections: 0, IdleTimeout: time.Second, HeaderTimeout: time.Second}.Validate())

	err := connlimit.Limits{MaxConnections: -1, IdleTimeout: 0, HeaderTimeout: -time.Second}.Validate()
	is.True(err != nil)
	msg := err.Error()
	is.True(strings.Contains(msg, "max connections is -1"))
	is.True(strings.Contains(msg, "idle timeout is 0s"))
	is.True(strings.Contains(msg, "header timeout is -1s"))
}

// healthz is a mux that answers GET /healthz with 200 "ok".
func healthz() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})
	return mux
}

// startServer serves h on a fresh 127.0.0.1 port through connlimit.
func startServer(t *testing.T, limits connlimit.Limits, h http.Handler) (*connlimit.Listener, string) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	l := connlimit.Apply(srv, raw, limits)
	serve(t, srv, l)
	return l, l.Addr().String()
}

func serve(t *testing.T, srv *http.Server, ln net.Listener) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
}

// waitStats waits up to 5 s for l's counters to become want; connections
// are closed asynchronously, so the server reports them a moment later.
func waitStats(t *testing.T, l *connlimit.Listener, want connlimit.Stats) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := l.Stats()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats are %+v; want %+v", got, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// rawConn is a client connection that writes requests by hand, so a test
// controls exactly what the server sees and when.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("send: %v", err)
	}
}

// get sends a keep-alive GET for path and returns the status, or 0 if the
// connection failed.
func (rc *rawConn) get(path string) int {
	rc.t.Helper()
	if _, err := fmt.Fprintf(rc.c, "GET %s HTTP/1.1\r\nHost: thumbnailed.test\r\n\r\n", path); err != nil {
		return 0
	}
	return rc.readStatus()
}

// readStatus reads one response within 5 s and returns its status, or 0.
func (rc *rawConn) readStatus() int {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(rc.r, nil)
	if err != nil {
		rc.t.Logf("read response: %v", err)
		return 0
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	return resp.StatusCode
}

// waitClosed waits up to within for the server to close the connection and
// returns when it saw the close and how many bytes arrived before. It fails
// if the connection is still open after within.
func (rc *rawConn) waitClosed(within time.Duration) (time.Time, int, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(within))
	n, err := io.Copy(io.Discard, rc.r)
	closedAt := time.Now()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return closedAt, int(n), fmt.Errorf("connection still open after %s", within)
	}
	return closedAt, int(n), nil // EOF (nil from io.Copy) or a reset: closed
}
