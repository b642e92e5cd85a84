//go:build race

package server

import "time"

// The race detector slows every goroutine several times over: a bound on
// wall time gets this much more under it. Without -race the bounds are the
// contract's own.
func init() { timeSlack = time.Second }
