package testsmtp

import (
	"sync"
	"testing"
)

// stall holds the reply to one message's DATA.
type stall struct {
	arrived  chan Message
	released chan struct{}
}

// StallNext makes the server hold its reply to the DATA of the next
// message: the message is read whole and kept first (Received lists it, as
// a server that queued a message and then lost the connection before it
// could say so), then the reply waits until release is called. arrived
// gets the message once it is kept. The end of the test releases it.
// Several calls stall as many messages, in order.
func (s *Server) StallNext(t testing.TB) (arrived <-chan Message, release func()) {
	st := &stall{arrived: make(chan Message, 1), released: make(chan struct{})}
	var once sync.Once
	release = func() { once.Do(func() { close(st.released) }) }
	t.Cleanup(release) // the server's Close does not wait for a held reply
	s.mu.Lock()
	s.stalls = append(s.stalls, st)
	s.mu.Unlock()
	return st.arrived, release
}

// stallReply holds the reply to message m when a stall is armed.
func (s *Server) stallReply(m Message) error {
	s.mu.Lock()
	if len(s.stalls) == 0 {
		s.mu.Unlock()
		return nil
	}
	st := s.stalls[0]
	s.stalls = s.stalls[1:]
	s.mu.Unlock()
	st.arrived <- m
	<-st.released
	return nil
}
