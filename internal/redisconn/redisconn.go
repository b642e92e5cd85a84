// Package redisconn holds what the two users of Redis here (the job store
// and the Redis blob store) must do the same way: give a connection back to
// the pool, and tell a reply that refuses for a passing reason.
package redisconn

import (
	"context"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Release returns a connection to the pool. One whose last command timed
// out may still hold an unfinished MULTI, and closing it would write
// DISCARD while redigo (v1.9.3) may still be writing the timed-out command
// from a goroutine of its own; such a connection is broken and will not be
// reused, so DISCARD is given an expired deadline: it clears the pool's
// record of the MULTI without any I/O (redigo returns before writing when
// the deadline has passed).
func Release(conn redis.Conn) {
	if conn.Err() != nil {
		expired, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
		_, _ = redis.DoContext(conn, expired, "DISCARD")
		cancel()
	}
	conn.Close()
}

// Passing tells whether a reply refuses for a reason that passes: out of
// memory, loading its data, a read-only replica, no master, a script
// running, a failed snapshot that stops writes. Such a refusal means Redis
// cannot serve us now; any other refuses the command itself.
func Passing(reply redis.Error) bool {
	code, _, _ := strings.Cut(string(reply), " ")
	switch code {
	case "OOM", "LOADING", "READONLY", "MASTERDOWN", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MISCONF":
		return true
	}
	return false
}
