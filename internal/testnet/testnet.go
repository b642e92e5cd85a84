// Package testnet finds loopback addresses for servers under test.
package testnet

import (
	"net"
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
