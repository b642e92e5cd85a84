// Package testsmtp is a real SMTP server (emersion/go-smtp) on loopback for
// tests: it keeps every message it accepts, and can refuse recipients.
package testsmtp

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one accepted message.
type Message struct {
	From string
	To   []string
	Data []byte
}

// Server is the running server; it stops when the test ends.
type Server struct {
	mu       sync.Mutex
	messages []Message
	reply    func(rcpt string) error
	addr     string
	stalls   []*stall // StallNext (stall.go)
}

// New starts a server on a free loopback port.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{server: s}, nil }))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.ErrorLog = discardLogger{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// URL is the THUMBNAILED_SMTP_URL of the server (no TLS on loopback).
func (s *Server) URL() string { return "smtp://" + s.addr + "?tls=none" }

// SetReply decides RCPT TO: a non-nil error (an *smtp.SMTPError such as
// TempFailure or PermanentFailure) refuses the recipient. nil accepts all.
func (s *Server) SetReply(f func(rcpt string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reply = f
}

// Received returns the messages accepted so far.
func (s *Server) Received() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// TempFailure refuses a recipient with 451 (try again later).
func TempFailure(string) error {
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Mailbox busy, try again later"}
}

// PermanentFailure refuses a recipient with 550 (no such user).
func PermanentFailure(rcpt string) error {
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + rcpt + ">: no such user here"}
}

type session struct {
	server *Server
	msg    Message
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error { s.msg.From = from; return nil }

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.server.mu.Lock()
	reply := s.server.reply
	s.server.mu.Unlock()
	if reply != nil {
		if err := reply(to); err != nil {
			return err
		}
	}
	s.msg.To = append(s.msg.To, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.msg.Data = b
	s.server.mu.Lock()
	s.server.messages = append(s.server.messages, s.msg)
	s.server.mu.Unlock()
	return s.server.stallReply(s.msg) // StallNext (stall.go)
}

func (s *session) Reset()        { s.msg = Message{} }
func (s *session) Logout() error { return nil }

type discardLogger struct{}

func (discardLogger) Printf(string, ...interface{}) {}
func (discardLogger) Println(...interface{})        {}
