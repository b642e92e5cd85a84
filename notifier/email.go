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
	"strconv"
	"strings"
	"time"

	"github.com/wneessen/go-mail"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/mailaddr"
	"github.com/thumbnailed/thumbnailed/templates"
	"github.com/thumbnailed/thumbnailed/view"
)

// sendEmail makes one attempt to mail the job's result to its address.
func (n *Notifier) sendEmail(ctx context.Context, log *slog.Logger, job *jobs.Job, _ known) result {
	// The rule was checked at submit; the same rule gives the exact form
	// sent to and the key the per-recipient limit counts.
	addr, err := mailaddr.Parse(job.Request.Email)
	if err != nil {
		return failed(codes.RecipientInvalid, "%s", err)
	}
	allowed, _, err := n.store.AllowEmail(ctx, addr.Key(), job.ID, n.cfg.EmailPerRecipientPerHour, n.now())
	if err != nil {
		return retryable("could not check the per-recipient email limit: %s", err)
	}
	if !allowed {
		return failed(codes.RecipientRateLimited,
			"this address has already been sent %d emails this hour, the most this service sends to one address; the result is still available from the API",
			n.cfg.EmailPerRecipientPerHour)
	}
	msg, err := n.buildEmail(ctx, log, job, addr)
	if err != nil {
		return retryable("could not write the email: %s", scrub(err.Error(), addr.String()))
	}
	if err := n.mailer.send(ctx, msg, job.ID); err != nil {
		return classifyMailError(err, addr.String())
	}
	return result{delivered: true}
}

// classifyMailError: a 5xx answer fails the delivery at once; a 4xx answer,
// a network error or anything else is worth another attempt.
func classifyMailError(err error, addr string) result {
	var se *mail.SendError
	var r result
	switch {
	case errors.As(err, &se) && se.ErrorCode() >= 500 && se.ErrorCode() < 600:
		r = failed(codes.RecipientRejected, "the mail server refused the message: %s", scrub(sendErrorText(se), addr))
	case errors.As(err, &se):
		r = retryable("the mail server did not take the message: %s", scrub(sendErrorText(se), addr))
	default:
		return retryable("could not hand the message to the mail server: %s", scrub(err.Error(), addr))
	}
	r.statusCode = se.ErrorCode()
	r.response = cleanResponse([]byte(scrub(sendErrorText(se), addr)))
	return r
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

// maxEmailBytes keeps a message under what mail systems commonly take
// (10 MB), counting base64's growth and its line breaks.
const maxEmailBytes = 10_000_000

// encodedSize is how many bytes n bytes take in a MIME part: base64, in
// lines of 76 characters each ended by CRLF (what go-mail writes).
func encodedSize(n int) int {
	b64 := (n + 2) / 3 * 4
	return b64 + (b64+75)/76*2
}

// buildEmail writes the message: text and HTML from templates; on success
// the first output inline (cid) as the one part a reader also saves, the
// other outputs attached while the message stays under maxEmailBytes, and
// every output listed with its signed link. Every header goes through
// go-mail, which encodes what it is given; the address passed the rule and
// the subject is folded onto one line by templates.
func (n *Notifier) buildEmail(ctx context.Context, log *slog.Logger, job *jobs.Job, to mailaddr.Address) (*mail.Msg, error) {
	data := templates.Data{JobID: job.ID, JobURL: n.links.Base + view.JobPath(job.ID), Source: sourceForPeople(job.Request),
		Accepted: n.cfg.AcceptedFormats}
	kind := templates.Failed
	type file struct {
		name, contentType string
		bytes             []byte
	}
	var inline *file
	var attachments []file
	if job.Status == jobs.StatusSucceeded && job.Result != nil {
		kind = templates.Succeeded
		size := 0
		for i, o := range job.Result.Outputs {
			out := templates.Output{Name: o.Name, Width: o.Width, Height: o.Height, Format: o.Format, ContentType: o.ContentType,
				Bytes: o.Bytes, URL: n.links.Output(job.ID, o.Name, job.ExpiresAt)}
			if encoded := encodedSize(o.Bytes); size+encoded <= maxEmailBytes-200_000 {
				b, err := n.blobs.Get(ctx, job.ID, o.Blob())
				switch {
				case errors.Is(err, blob.ErrNotFound):
					log.Warn("an image has expired; the email goes without it", "output", o.Name)
				case err != nil:
					return nil, fmt.Errorf("read image %s: %w", o.Name, err)
				default:
					size += encoded
					out.Attached = true
					f := file{name: "thumbnail-" + safeName(job.ID) + "-" + safeName(o.Name) + extension(o.Format),
						contentType: imageContentType(o.ContentType), bytes: b}
					if i == 0 {
						inline, data.ImageCID = &f, f.name+"@thumbnailed"
					} else {
						attachments = append(attachments, f)
					}
				}
			}
			data.Outputs = append(data.Outputs, out)
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
	if err := msg.To(to.String()); err != nil {
		return nil, fmt.Errorf("recipient: %w", err)
	}
	msg.Subject(rendered.Subject)
	msg.SetDate()
	// One message per series of attempts: the same id on every attempt lets
	// mail systems drop a duplicate left by an attempt that was interrupted;
	// a redelivery is a new message, which a mail system must not drop.
	series := 1
	if d := job.Delivery(jobs.ChannelEmail); d != nil && d.SeriesStart > 1 {
		series = d.SeriesStart
	}
	id := "thumbnail-" + safeName(job.ID)
	if series > 1 {
		id += "-" + strconv.Itoa(series)
	}
	msg.SetMessageIDWithValue(id + "@" + n.mailDomain())
	msg.SetGenHeader(mail.Header("Auto-Submitted"), "auto-generated")
	msg.SetGenHeader(mail.HeaderXAutoResponseSuppress, "All")
	msg.SetBodyString(mail.TypeTextPlain, rendered.Text)
	msg.AddAlternativeString(mail.TypeTextHTML, rendered.HTML)
	if inline != nil {
		// The inline image is the one part of it: shown in the HTML and
		// saved by the reader under its file name.
		ct := mail.WithFileContentType(mail.ContentType(inline.contentType))
		if err := msg.EmbedReader(inline.name, bytes.NewReader(inline.bytes), ct, mail.WithFileContentID("<"+data.ImageCID+">")); err != nil {
			return nil, fmt.Errorf("inline image: %w", err)
		}
	}
	for _, f := range attachments {
		ct := mail.WithFileContentType(mail.ContentType(f.contentType))
		if err := msg.AttachReader(f.name, bytes.NewReader(f.bytes), ct); err != nil {
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
func smtpOptions(s SMTPServer, timeout time.Duration) []mail.Option {
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
	server  SMTPServer
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
