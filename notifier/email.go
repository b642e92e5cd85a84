package notifier

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	netmail "net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/wneessen/go-mail"

	"github.com/thumbnailed/thumbnailed/config"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/templates"
	"github.com/thumbnailed/thumbnailed/view"
)

// sendEmail makes one attempt to mail the job's result to its address.
func (n *Notifier) sendEmail(ctx context.Context, log *slog.Logger, job *jobs.Job) outcome {
	addr := job.Request.Email
	if err := view.ValidEmail(addr); err != nil {
		return failed(CodeRecipientInvalid, "%s", err)
	}
	allowed, _, err := n.store.AllowEmail(ctx, addr, job.ID, n.cfg.EmailPerRecipientPerHour, n.now())
	if err != nil {
		return retryable("could not check the per-recipient email limit: %s", err)
	}
	if !allowed {
		return failed(CodeRecipientRateLimited,
			"this address has already been sent %d emails this hour, the most this service sends to one address; the result is still available at %s",
			n.cfg.EmailPerRecipientPerHour, view.JobPath(job.ID))
	}
	var image []byte
	if job.Status == jobs.StatusSucceeded {
		image, err = n.store.Image(ctx, job.ID)
		if errors.Is(err, jobs.ErrNotFound) {
			log.Warn("the thumbnail has expired; the email goes without it")
		} else if err != nil {
			return retryable("could not read the thumbnail: %s", err)
		}
	}
	msg, err := n.buildEmail(job, image)
	if err != nil {
		return failed(CodeInternal, "could not write the email: %s", scrub(err.Error(), addr))
	}
	if err := n.mailer.send(ctx, msg, job.ID); err != nil {
		return classifyMailError(err, addr)
	}
	return outcome{delivered: true}
}

// classifyMailError: a 5xx answer fails the delivery at once; a 4xx answer,
// a network error or anything else is worth another attempt.
func classifyMailError(err error, addr string) outcome {
	var se *mail.SendError
	if errors.As(err, &se) && se.ErrorCode() >= 500 && se.ErrorCode() < 600 {
		return failed(CodeRecipientRejected, "the mail server refused the message: %s", scrub(sendErrorText(se), addr))
	}
	if errors.As(err, &se) {
		return retryable("the mail server did not take the message: %s", scrub(sendErrorText(se), addr))
	}
	return retryable("could not hand the message to the mail server: %s", scrub(err.Error(), addr))
}

// sendErrorText is go-mail's message without the lists of recipients and
// message ids it appends.
func sendErrorText(se *mail.SendError) string {
	s := se.Error()
	for _, tail := range []string{", affected recipient(s):", ", affected message ID:"} {
		if i := strings.Index(s, tail); i >= 0 {
			s = s[:i]
		}
	}
	return s
}

// scrub masks the recipient wherever an error quotes it (go-mail lists the
// affected recipients; servers often echo the address) and keeps the text
// short.
func scrub(s, addr string) string {
	if addr != "" {
		s = regexp.MustCompile(`(?i)`+regexp.QuoteMeta(addr)).ReplaceAllLiteralString(s, view.MaskEmail(addr))
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

// buildEmail writes the message: text and HTML from templates, and on
// success the thumbnail inline (cid) and attached. Every header goes through
// go-mail, which encodes what it is given; the address was checked by
// ValidEmail and the subject is folded onto one line by templates.
func (n *Notifier) buildEmail(job *jobs.Job, image []byte) (*mail.Msg, error) {
	data := templates.Data{JobID: job.ID, JobPath: view.JobPath(job.ID), Source: sourceForPeople(job.Request)}
	kind := templates.Failed
	fileName := ""
	contentType := ""
	if job.Status == jobs.StatusSucceeded && job.Result != nil {
		kind = templates.Succeeded
		r := job.Result
		data.Width, data.Height, data.Format, data.ContentType, data.Bytes = r.Width, r.Height, r.Format, r.ContentType, r.Bytes
		data.ImagePath = view.ImagePath(job.ID)
		if image != nil {
			fileName = "thumbnail-" + safeName(job.ID) + extension(r.Format)
			contentType = imageContentType(r.ContentType)
			data.ImageCID = fileName + "@thumbnailed"
		}
	} else if job.Error != nil {
		data.ErrorCode, data.ErrorMessage = job.Error.Code, job.Error.Message
	} else {
		data.ErrorCode, data.ErrorMessage = "unknown", "the job ended without saying why"
	}
	rendered, err := templates.Render(kind, data)
	if err != nil {
		return nil, err
	}

	msg := mail.NewMsg(mail.WithNoDefaultUserAgent())
	if err := msg.From(n.cfg.MailFrom); err != nil {
		return nil, fmt.Errorf("sender: %w", err)
	}
	if err := msg.To(job.Request.Email); err != nil {
		return nil, fmt.Errorf("recipient: %w", err)
	}
	msg.Subject(rendered.Subject)
	msg.SetDate()
	// One message per job: the same id on every attempt lets mail systems
	// drop a duplicate left by an attempt that was interrupted.
	msg.SetMessageIDWithValue("thumbnail-" + safeName(job.ID) + "@" + n.mailDomain())
	msg.SetGenHeader(mail.Header("Auto-Submitted"), "auto-generated")
	msg.SetGenHeader(mail.HeaderXAutoResponseSuppress, "All")
	msg.SetBodyString(mail.TypeTextPlain, rendered.Text)
	msg.AddAlternativeString(mail.TypeTextHTML, rendered.HTML)
	if fileName != "" {
		ct := mail.WithFileContentType(mail.ContentType(contentType))
		if err := msg.EmbedReader(fileName, bytes.NewReader(image), ct, mail.WithFileContentID("<"+data.ImageCID+">")); err != nil {
			return nil, fmt.Errorf("inline image: %w", err)
		}
		if err := msg.AttachReader(fileName, bytes.NewReader(image), ct); err != nil {
			return nil, fmt.Errorf("attachment: %w", err)
		}
	}
	return msg, nil
}

func (n *Notifier) mailDomain() string {
	if a, err := netmail.ParseAddress(n.cfg.MailFrom); err == nil {
		if _, domain, ok := strings.Cut(a.Address, "@"); ok && domain != "" {
			return domain
		}
	}
	return "thumbnailed.invalid"
}

// sourceForPeople names the original without secrets a URL may carry.
func sourceForPeople(r jobs.Request) string {
	if r.Source == jobs.SourceUpload {
		return "an uploaded image"
	}
	return view.MaskURL(r.URL)
}

// safeName keeps what is safe in a file name and a Message-ID.
func safeName(s string) string {
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return -1
	}, s)
	if clean == "" {
		return "job"
	}
	return clean
}

func extension(format string) string {
	switch format {
	case "jpeg", "jpg":
		return ".jpg"
	case "png":
		return ".png"
	case "webp":
		return ".webp"
	}
	return ".img"
}

func imageContentType(ct string) string {
	switch ct {
	case "image/jpeg", "image/png", "image/webp":
		return ct
	}
	return "application/octet-stream"
}

// mailer hands a message over: to an SMTP server, or to the outbox.
type mailer interface {
	send(ctx context.Context, msg *mail.Msg, jobID string) error
	describe() string
}

// options are the go-mail client options for the server. The TLS policy is
// always set: go-mail's default is mandatory STARTTLS on any port.
func smtpOptions(s config.SMTPServer, timeout time.Duration) []mail.Option {
	opts := []mail.Option{
		mail.WithPort(s.Port),
		mail.WithTimeout(timeout),
		mail.WithTLSConfig(&tls.Config{ServerName: s.Host, MinVersion: tls.VersionTLS12}),
	}
	switch s.Security {
	case "tls":
		opts = append(opts, mail.WithSSL())
	case "none":
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if s.Username != "" {
		// The strongest mechanism the server offers; go-mail refuses PLAIN
		// and LOGIN without TLS, so a password never crosses in clear text.
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover),
			mail.WithUsername(s.Username), mail.WithPassword(s.Password))
	}
	return opts
}

type smtpMailer struct {
	server  config.SMTPServer
	timeout time.Duration
}

func (m *smtpMailer) send(ctx context.Context, msg *mail.Msg, _ string) error {
	client, err := mail.NewClient(m.server.Host, smtpOptions(m.server, m.timeout)...)
	if err != nil {
		return fmt.Errorf("mail client: %w", err)
	}
	return client.DialAndSendWithContext(ctx, msg)
}

func (m *smtpMailer) describe() string {
	return fmt.Sprintf("smtp %s:%d (tls=%s)", m.server.Host, m.server.Port, m.server.Security)
}

// outbox writes each message as {job id}-email.eml into a folder, for
// development and for setups without SMTP.
type outbox struct{ dir string }

func newOutbox(dir string) (*outbox, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("outbox %s: %w", dir, err)
	}
	return &outbox{dir: dir}, nil
}

// send writes atomically: a temporary file in the same folder, renamed into
// place, so a reader never sees half a message.
func (o *outbox) send(_ context.Context, msg *mail.Msg, jobID string) error {
	if err := os.MkdirAll(o.dir, 0o750); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	tmp, err := os.CreateTemp(o.dir, ".incoming-*.eml")
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := msg.WriteTo(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("outbox: write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("outbox: sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("outbox: close: %w", err)
	}
	if err := os.Rename(tmp.Name(), o.path(jobID)); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

func (o *outbox) path(jobID string) string {
	return filepath.Join(o.dir, safeName(jobID)+"-"+jobs.ChannelEmail+".eml")
}

func (o *outbox) describe() string { return "outbox " + o.dir }
