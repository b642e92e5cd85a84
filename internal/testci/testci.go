// Package testci holds the one rule every test kit applies to a tool the
// machine lacks (redis-server, versitygw, Chromium): the test is skipped,
// saying how to install it, except under CI, where .ci/run installs every
// tool and a missing one fails the test rather than letting it pass unrun.
package testci

import (
	"os"
	"testing"
)

// Missing ends t because something it needs is missing, as msg says: a
// failure under CI, a skip elsewhere.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal("CI is set and " + msg)
	}
	t.Skip(msg)
}
