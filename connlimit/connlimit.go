// Package connlimit keeps idle connections from locking clients out of an
// http.Server. It closes an idle keep-alive connection after an idle timeout,
// a connection that has not sent a whole request header within a header
// timeout, and, when the cap on open connections is reached, the connection
// that has been idle longest, to admit the new client.
//
// # Which connection makes room
//
// A connection is idle, and may be closed to admit a new one:
//   - from the moment it is accepted until the server has read a whole
//     request header from it (http.StateNew), and
//   - from the moment its response is finished until the server has read the
//     whole header of its next request (http.StateIdle); a client part-way
//     through sending that header is still idle.
//
// A connection serving a request (http.StateActive: header read, handler
// running or response being written) is never closed to make room. Idle
// connections are ordered by the time they last became idle (accept time, or
// the end of their last response), and the longest-idle one goes first.
//
// When MaxConnections are open and none is idle, the new connection is closed
// at once (refused); the client sees the connection closed without an answer.
// It is not held back: the kernel's accept backlog is not a queue this
// package controls, and a waiting client would only time out later.
//
// A hijacked connection (a websocket, say) leaves the accounting: it no
// longer counts as open and is never closed by this package. An HTTP/2
// connection is active for its whole life, so it is never closed to make
// room; its idle time is the HTTP/2 server's business.
//
// Closing to make room races with a client that sends its next request on
// that connection at the same moment; that request fails as it would if the
// idle timeout had closed the connection (Go's http.Transport retries an
// idempotent request on a fresh connection).
package connlimit

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Limits are the serve-side limits of one listener.
type Limits struct {
	// MaxConnections is how many connections may be open at once; 0 means
	// no cap.
	MaxConnections int
	// IdleTimeout closes a keep-alive connection that has waited this long
	// for its next request (http.Server.IdleTimeout).
	IdleTimeout time.Duration
	// HeaderTimeout closes a connection that has not sent a whole request
	// header this long after it was accepted, or after the first bytes of a
	// later request arrived (http.Server.ReadHeaderTimeout).
	HeaderTimeout time.Duration
}

// Validate reports every setting that would switch a protection off.
func (l Limits) Validate() error {
	var errs []error
	if l.MaxConnections < 0 {
		errs = append(errs, fmt.Errorf("max connections is %d; it must be 0 (no cap) or more", l.MaxConnections))
	}
	if l.IdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("idle timeout is %s; it must be greater than zero", l.IdleTimeout))
	}
	if l.HeaderTimeout <= 0 {
		errs = append(errs, fmt.Errorf("header timeout is %s; it must be greater than zero", l.HeaderTimeout))
	}
	return errors.Join(errs...)
}

// Stats are a listener's counters, for metrics.
type Stats struct {
	Open     int    // connections open now: idle or serving a request (hijacked ones are not counted)
	Idle     int    // of Open, those that could be closed to admit a new client
	Accepted uint64 // connections handed to the server since the start
	Evicted  uint64 // idle connections closed to admit a new one
	Refused  uint64 // new connections closed at once because MaxConnections were open and none was idle
}

// Listener is a net.Listener that enforces MaxConnections. Make one with
// Apply; it works only together with the ConnState hook Apply installs.
type Listener struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns map[net.Conn]*entry // open connections by the net.Conn Accept returned
	idle  entry               // sentinel of the idle list: idle.next is the longest idle
	stats Stats
}

// entry is one open connection; while idle it is linked into the idle list,
// oldest first.
type entry struct {
	conn       net.Conn
	prev, next *entry
}

// Apply makes srv enforce limits on connections accepted from ln. It sets
// srv.IdleTimeout and srv.ReadHeaderTimeout, installs a ConnState hook that
// calls any hook already set, and returns the listener to pass to srv.Serve.
// Do not replace srv.ConnState afterwards. ln should be the plain TCP
// listener: with TLS, wrap the returned listener (srv.ServeTLS and
// tls.NewListener do), not the other way round.
func Apply(srv *http.Server, ln net.Listener, limits Limits) *Listener {
	l := &Listener{
		Listener: ln,
		max:      limits.MaxConnections,
		conns:    make(map[net.Conn]*entry),
	}
	l.idle.prev, l.idle.next = &l.idle, &l.idle

	srv.IdleTimeout = limits.IdleTimeout
	srv.ReadHeaderTimeout = limits.HeaderTimeout
	previous := srv.ConnState
	srv.ConnState = func(c net.Conn, state http.ConnState) {
		l.track(c, state)
		if previous != nil {
			previous(c, state)
		}
	}
	return l
}

// Accept waits for a connection and admits it, closing the longest-idle
// connection first if MaxConnections are open. A connection that cannot be
// admitted, because every open one is serving a request, is closed and
// Accept waits for the next.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		victim, admitted := l.admit(c)
		if victim != nil {
			_ = victim.Close() // the server's read fails and it reports StateClosed
		}
		if admitted {
			return c, nil
		}
		_ = c.Close()
	}
}

// admit counts c as open and idle, making room first if needed. It returns
// the connection to close to make room, if any, and whether c is admitted.
func (l *Listener) admit(c net.Conn) (victim net.Conn, admitted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && len(l.conns) >= l.max {
		oldest := l.idle.next
		if oldest == &l.idle {
			l.stats.Refused++
			return nil, false
		}
		l.forget(oldest)
		l.stats.Evicted++
		victim = oldest.conn
	}
	e := &entry{conn: c}
	l.conns[c] = e
	l.pushIdle(e)
	l.stats.Accepted++
	return victim, true
}

// track follows the server's view of a connection.
func (l *Listener) track(c net.Conn, state http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.lookup(c)
	if e == nil {
		return // closed to make room already, or not accepted by l
	}
	switch state {
	case http.StateNew:
		// Counted and idle since Accept.
	case http.StateActive:
		l.unlinkIdle(e)
	case http.StateIdle:
		l.unlinkIdle(e)
		l.pushIdle(e)
	case http.StateHijacked, http.StateClosed:
		l.forget(e)
	}
}

// lookup finds the entry of c, looking through wrappers such as *tls.Conn
// that expose the connection underneath.
func (l *Listener) lookup(c net.Conn) *entry {
	for range 4 {
		if e, ok := l.conns[c]; ok {
			return e
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = u.NetConn()
	}
	return nil
}

// Stats returns the counters as they are now.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.Open = len(l.conns)
	return s
}

// forget stops counting e as open. l.mu is held.
func (l *Listener) forget(e *entry) {
	l.unlinkIdle(e)
	delete(l.conns, e.conn)
}

// pushIdle makes e the most recently idle connection. l.mu is held.
func (l *Listener) pushIdle(e *entry) {
	last := l.idle.prev
	e.prev, e.next = last, &l.idle
	last.next = e
	l.idle.prev = e
	l.stats.Idle++
}

// unlinkIdle takes e out of the idle list if it is there. l.mu is held.
func (l *Listener) unlinkIdle(e *entry) {
	if e.next == nil {
		return
	}
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
	l.stats.Idle--
}
