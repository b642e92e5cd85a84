// Package testnet finds loopback addresses for servers under test, stands
// in for servers that are gone or hung, and calls clients of them at once.
package testnet

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// FreeAddr returns a free 127.0.0.1 host:port. Another process could take
// it before the caller binds it; on a test machine that is rare enough.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Stalled listens on loopback and accepts connections that it never reads
// from or answers, like a Redis or an HTTP server that has hung. It returns
// its address and how many connections it has accepted so far; the listener
// and the connections close when the test ends.
func Stalled(t testing.TB) (addr string, accepted func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}
}

// StalledAddr is Stalled's address alone.
func StalledAddr(t testing.TB) string {
	t.Helper()
	addr, _ := Stalled(t)
	return addr
}

// Outcome is how one call of CallAll went.
type Outcome struct {
	Name string // the target's name and the call's: "target/call"
	Err  error
	Took time.Duration
}

// CallAll makes every call on every target at once, each with a context that
// ends after deadline, and returns how they went, in the order they ended.
// The calls run in goroutines rather than parallel subtests, so that they
// take about one deadline in all whatever -parallel allows.
func CallAll[T any](t testing.TB, deadline time.Duration, targets map[string]T, calls map[string]func(context.Context, T) error) []Outcome {
	t.Helper()
	outcomes := make(chan Outcome)
	for target, x := range targets {
		for name, call := range calls {
			go func() {
				ctx, cancel := context.WithTimeout(t.Context(), deadline)
				defer cancel()
				start := time.Now()
				err := call(ctx, x)
				outcomes <- Outcome{target + "/" + name, err, time.Since(start)}
			}()
		}
	}
	var all []Outcome
	for range len(targets) * len(calls) {
		all = append(all, <-outcomes)
	}
	return all
}
