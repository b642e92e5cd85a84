//go:build unix

package connlimit_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/connlimit"
	"github.com/thumbnailed/thumbnailed/internal/testlog"
)

// The attack tests run the server in a child process (this test binary
// again, see TestMain) with its own file descriptor limit, as in production,
// and the attacker and the normal client in this process: in one process the
// attacker's sockets would use up the same descriptors the server needs.
const (
	childServerEnv = "CONNLIMIT_TEST_SERVER"    // "plain" or "wrapped"
	childFDsEnv    = "CONNLIMIT_TEST_FD_LIMIT"  // the child's soft RLIMIT_NOFILE
	childMaxEnv    = "CONNLIMIT_TEST_MAX_CONNS" // MaxConnections when wrapped
	attackIdle     = 2 * time.Minute            // idle keep-alive, as before the fix
	attackWorkers  = 64                         // attacker connections set up at once
	answerTimeout  = time.Second                // an attacker connection without an answer by then is stuck
	normalTimeout  = 2 * time.Second            // the normal client gives up after this
	attackersEnv   = "CONNLIMIT_TEST_ATTACKERS" // overrides the number of attacker connections
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childServerEnv); mode != "" {
		if err := serveForParent(mode); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestIdleAttackDoesNotLockOutClients(t *testing.T) {
	is := is.New(t)
	attackers, maxConns := attackSize(t, 10000)
	server := startChildServer(t, "wrapped", attackers, maxConns)

	answered, stuck := attack(t, server.addr, attackers)
	is.Equal(answered, attackers) // every attacker was served, then idled
	is.Equal(stuck, 0)

	client := &http.Client{Timeout: normalTimeout}
	defer client.CloseIdleConnections()
	start := time.Now()
	resp, err := client.Get("http://" + server.addr + "/healthz")
	waited := time.Since(start)
	is.NoErr(err)
	_, _ = io.Copy(io.Discard, resp.Body)
	is.NoErr(resp.Body.Close())
	t.Logf("with connlimit (MaxConnections %d, fd limit %d): %d idle attacker connections opened, normal client got %d in %s",
		maxConns, attackers, attackers, resp.StatusCode, waited.Round(time.Microsecond))
	is.Equal(resp.StatusCode, http.StatusOK)
	is.True(waited < time.Second)

	// The same client asks for the figures on the same connection. The
	// server marks a connection idle only after its answer is flushed, so the
	// last attacker may read its answer a moment before it counts as idle:
	// ask again until the figures settle.
	accepted := uint64(attackers + 1)
	want := connlimit.Stats{
		Open:     maxConns,
		Idle:     maxConns - 1, // all but the one serving /stats
		Accepted: accepted,
		Evicted:  accepted - uint64(maxConns),
	}
	var stats connlimit.Stats
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		stats = connlimit.Stats{}
		resp, err = client.Get("http://" + server.addr + "/stats")
		is.NoErr(err)
		err = json.NewDecoder(resp.Body).Decode(&stats)
		_ = resp.Body.Close()
		is.NoErr(err)
		if stats == want || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("stats: %+v", stats)
	is.Equal(stats, want)
}

// TestIdleAttackWithoutConnlimit measures what the attack does to a plain
// http.Server whose process can open as many descriptors as there are
// attacker connections. It asserts nothing about the outcome: it is the
// figure to compare with the test above. It runs at 2,000 connections to
// keep the suite fast (what matters is reaching the descriptor limit);
// CONNLIMIT_TEST_ATTACKERS=10000 runs it at the scale of the test above.
func TestIdleAttackWithoutConnlimit(t *testing.T) {
	attackers, _ := attackSize(t, 2000)
	server := startChildServer(t, "plain", attackers, 0)

	answered, stuck := attack(t, server.addr, attackers)

	client := &http.Client{Timeout: normalTimeout}
	defer client.CloseIdleConnections()
	start := time.Now()
	resp, err := client.Get("http://" + server.addr + "/healthz")
	waited := time.Since(start)
	outcome := ""
	if err != nil {
		outcome = "error: " + err.Error()
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		outcome = resp.Status
	}
	t.Logf("without connlimit (fd limit %d, idle timeout %s): %d attacker connections answered and idle, %d never answered; normal client after %s: %s; server logged %d accept errors for too many open files",
		attackers, attackIdle, answered, stuck, waited.Round(time.Millisecond), outcome,
		strings.Count(server.stderr.String(), "too many open files"))
}

// attackSize is the number of attacker connections, want (a tenth with
// -short, or CONNLIMIT_TEST_ATTACKERS) or less when the descriptor limit of
// this process, which holds every attacker socket, cannot reach that; and
// the cap for a wrapped server: 4096, or half the attackers if less.
func attackSize(t *testing.T, want int) (attackers, maxConns int) {
	t.Helper()
	attackers = want
	if testing.Short() {
		attackers = want / 10
	}
	if v := os.Getenv(attackersEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s: %v", attackersEnv, err)
		}
		attackers = n
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max // Go raises it at start already; make sure
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	if room := int(lim.Cur) - 200; attackers > room {
		t.Logf("descriptor limit %d: %d attacker connections instead of %d", lim.Cur, room, attackers)
		attackers = room
	}
	maxConns = min(4096, attackers/2)
	return attackers, maxConns
}

// attack opens n connections to addr, each sending one keep-alive
// GET /healthz and reading the answer, and leaves them open until the test
// ends. A connection whose answer does not come within answerTimeout is
// counted as stuck (and also left open).
func attack(t *testing.T, addr string, n int) (answered, stuck int) {
	t.Helper()
	conns := make([]net.Conn, n)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	})
	var ok, late, failed atomic.Int64
	var firstErr atomic.Value
	next := atomic.Int64{}
	start := time.Now()
	var wg sync.WaitGroup
	for range attackWorkers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				conns[i] = c
				_, err = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: thumbnailed.test\r\n\r\n")
				if err == nil {
					_ = c.SetReadDeadline(time.Now().Add(answerTimeout))
					var resp *http.Response
					resp, err = http.ReadResponse(bufio.NewReaderSize(c, 512), nil)
					if err == nil {
						_, err = io.Copy(io.Discard, resp.Body)
					}
				}
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, os.ErrDeadlineExceeded):
					late.Add(1)
				default:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("attack: %d connections in %s: %d answered, %d without an answer in %s, %d failed",
		n, time.Since(start).Round(time.Millisecond), ok.Load(), late.Load(), answerTimeout, failed.Load())
	if failed.Load() > 0 {
		t.Fatalf("%d attacker connections failed; first: %v", failed.Load(), firstErr.Load())
	}
	return int(ok.Load()), int(late.Load())
}

// childServer is a server running in a child process.
type childServer struct {
	addr   string
	stderr *testlog.Buffer
}

// startChildServer runs this test binary as a server ("plain" http.Server
// or "wrapped" by connlimit) limited to fdLimit descriptors, and stops it
// when the test ends.
func startChildServer(t *testing.T, mode string, fdLimit, maxConns int) childServer {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(),
		childServerEnv+"="+mode,
		childFDsEnv+"="+strconv.Itoa(fdLimit),
		childMaxEnv+"="+strconv.Itoa(maxConns),
	)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &testlog.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close() // the child exits when its stdin closes
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("child server: %v; stderr:\n%s", err, lastLines(stderr.String(), 20))
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("child server did not stop when its stdin closed")
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("child server did not say where it listens: %v; stderr:\n%s", err, stderr.String())
	}
	return childServer{addr: strings.TrimSpace(line), stderr: stderr}
}

// serveForParent is the child's side of startChildServer: it serves until
// its stdin closes.
func serveForParent(mode string) error {
	fds, err := strconv.ParseUint(os.Getenv(childFDsEnv), 10, 64)
	if err != nil {
		return fmt.Errorf("%s: %w", childFDsEnv, err)
	}
	maxConns, err := strconv.Atoi(os.Getenv(childMaxEnv))
	if err != nil {
		return fmt.Errorf("%s: %w", childMaxEnv, err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	lim.Cur = min(fds, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("set descriptor limit %d: %w", fds, err)
	}

	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := healthz()
	srv := &http.Server{
		Handler:  mux,
		ErrorLog: log.New(os.Stderr, "", 0),
		// As before the fix.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       attackIdle,
	}
	var ln net.Listener = raw
	switch mode {
	case "plain":
	case "wrapped":
		l := connlimit.Apply(srv, raw, connlimit.Limits{
			MaxConnections: maxConns,
			IdleTimeout:    attackIdle, // long, so that only the cap closes connections here
			HeaderTimeout:  10 * time.Second,
		})
		mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
			_ = json.NewEncoder(w).Encode(l.Stats())
		})
		ln = l
	default:
		return fmt.Errorf("%s: unknown mode %q", childServerEnv, mode)
	}
	go func() { _ = srv.Serve(ln) }()
	fmt.Println(raw.Addr().String())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
