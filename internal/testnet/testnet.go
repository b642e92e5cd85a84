// Package testnet finds loopback addresses for servers under test.
package testnet

import (
	"net"
	"sync"
	"testing"
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
