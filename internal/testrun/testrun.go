// Package testrun runs a program under test on a goroutine of its own for
// the length of a test, and checks that it stops cleanly at the end.
package testrun

import (
	"context"
	"testing"
	"time"
)

// Background runs serve with a context that is cancelled when the test
// ends; serve must then return nil within stop, or the test fails, naming
// what. It returns the channel serve's error arrives on, so that a test can
// notice an early exit; one that reads an error from it puts it back, for
// the check at the end.
func Background(t testing.TB, what string, stop time.Duration, serve func(ctx context.Context) error) chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s stopped with %v", what, err)
			}
		case <-time.After(stop):
			t.Errorf("%s did not stop within %v", what, stop)
		}
	})
	return done
}
