// Package testclock is a test's time: the code under test reads it, and the
// test moves it, so nothing waits for real time to pass.
package testclock

import (
	"sync"
	"time"
)

// Clock is a time that moves only when told.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New starts at the real time (signatures stay within a receiver's
// tolerance), to the millisecond (what Redis scores keep).
func New() *Clock { return &Clock{now: time.Now().UTC().Truncate(time.Millisecond)} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
