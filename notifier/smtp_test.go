package notifier

import (
	"strings"
	"testing"

	"github.com/matryer/is"
)

func TestParseSMTPURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want SMTPServer
	}{
		{"smtp://mail.example.com", SMTPServer{Host: "mail.example.com", Port: 587, Security: "starttls"}},
		{"smtp://mail.example.com?tls=starttls", SMTPServer{Host: "mail.example.com", Port: 587, Security: "starttls"}},
		{"smtp://mail.example.com?tls=tls", SMTPServer{Host: "mail.example.com", Port: 465, Security: "tls"}},
		{"smtp://mail.example.com?tls=none", SMTPServer{Host: "mail.example.com", Port: 25, Security: "none"}},
		{"smtp://mailpit:1025?tls=none", SMTPServer{Host: "mailpit", Port: 1025, Security: "none"}},
		{"smtps://mail.example.com", SMTPServer{Host: "mail.example.com", Port: 465, Security: "tls"}},
		{"smtp://apikey:p%40ss%2Fword@smtp.example.com:2525/", SMTPServer{Host: "smtp.example.com", Port: 2525, Security: "starttls", Username: "apikey", Password: "p@ss/word"}},
		{"smtp://[::1]:25?tls=NONE", SMTPServer{Host: "::1", Port: 25, Security: "none"}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			is := is.New(t)
			got, err := ParseSMTPURL(tc.in)
			is.NoErr(err)
			is.Equal(got, tc.want)
		})
	}
}

func TestParseSMTPURLRefusesAndNeverRepeatsThePassword(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"mail.example.com:25", "must start with smtp://"},
		{"http://user:hunter2@mail.example.com", "must start with smtp://"},
		{"smtp://user:hunter2@", "no host"},
		{"smtp://user:hunter2@mail.example.com?tls=yes", `tls="yes"`},
		{"smtp://user:hunter2@mail.example.com?tsl=none", `unknown parameter "tsl"`},
		{"smtp://user:hunter2@mail.example.com:0", `port "0"`},
		{"smtp://user:hunter2@mail.example.com:99999", `port "99999"`},
		{"smtp://user:hunter2@mail.example.com/path", "no path"},
		{"smtp://:hunter2@mail.example.com", "no user name"},
		{"smtp://user:hunter2@mail.example.com:%zz", "not a URL"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			is := is.New(t)
			_, err := ParseSMTPURL(tc.in)
			is.True(err != nil)
			is.True(strings.Contains(err.Error(), tc.want))
			is.True(!strings.Contains(err.Error(), "hunter2"))
		})
	}
}
