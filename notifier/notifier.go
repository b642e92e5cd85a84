// Package notifier pushes a finished job to its client: an email with the
// images (go-mail) and a signed callback POST (Standard Webhooks). Each
// delivery attempt is one call of Deliver, with plain arguments; the worker
// runs it from the queue.
//
// The job record is the source of truth: every attempt first claims itself
// in the record (attempts, last_attempt_at, and a lease), then sends, then
// records its outcome, and, when another attempt follows, schedules it in
// the same transaction. A run of an attempt that the record shows taken
// sends nothing; an attempt whose run died is recorded as interrupted by the
// sweeper (Interrupted) once its lease runs out.
package notifier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/metrics"
	"github.com/thumbnailed/thumbnailed/retry"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/view"
)

// Config is what deliveries need, ready to use (config.Load fills it and
// checks it; nothing here is defaulted again).
type Config struct {
	MailFrom string // THUMBNAILED_MAIL_FROM, checked by config
	// SMTP is the mail server; nil writes .eml files to OutboxDir instead.
	SMTP        *SMTPServer
	OutboxDir   string
	SMTPTimeout time.Duration // go-mail's WithTimeout (the dial, then each phase); an attempt may take twice it
	// WebhookSecret signs callbacks of jobs whose key has no secrets of its own; "" = unsigned.
	WebhookSecret    string
	CallbackTimeout  time.Duration
	CallbackSchedule retry.Schedule
	EmailSchedule    retry.Schedule
	// EmailPerRecipientPerHour limits the emails one address receives per clock hour.
	EmailPerRecipientPerHour int
	// InlineMaxBytes is how many image bytes a callback may carry inline; 0 = links only.
	InlineMaxBytes int64
	// AcceptedFormats names the formats this build decodes, for the advice
	// of a failure email ("JPEG, PNG, GIF and WebP").
	AcceptedFormats string
}

// DefaultSMTPTimeout is go-mail's timeout unless configured.
const DefaultSMTPTimeout = 30 * time.Second

// Store is the part of the job store deliveries use.
type Store interface {
	Claim(ctx context.Context, id, channel string, attempt int) (*jobs.Job, jobs.ClaimResult, string, error)
	Record(ctx context.Context, id, channel string, attempt int, o jobs.Outcome) (*jobs.Job, error)
	Interrupt(ctx context.Context, id, channel string, outcomeFor func(*jobs.Job, jobs.Delivery) jobs.Outcome) (bool, error)
	AllowEmail(ctx context.Context, recipient, jobID string, limit int, now time.Time) (bool, int, error)
}

// Blobs is where the images (and a callback's frozen body) are.
type Blobs interface {
	Get(ctx context.Context, job, name string) ([]byte, error)
	Put(ctx context.Context, job, name string, r io.Reader, expires time.Time) (int64, error)
}

// Secrets gives the webhook secrets of an API key by its name: every
// active one signs (two while a secret is being rotated).
type Secrets interface {
	WebhookSecrets(keyName string) []string
}

// Notifier sends the deliveries of finished jobs.
type Notifier struct {
	log     *slog.Logger
	cfg     Config
	store   Store
	blobs   Blobs
	client  *safehttp.Client
	secrets Secrets
	links   view.Links
	mailer  mailer
	metrics *metrics.Metrics
	now     func() time.Time

	email, callback channel
}

// New prepares deliveries: SMTP when cfg.SMTP is set, otherwise .eml files
// in cfg.OutboxDir (created if missing). client posts callbacks.
func New(logger *slog.Logger, cfg Config, store Store, blobs Blobs, client *safehttp.Client, secrets Secrets, links view.Links, m *metrics.Metrics) (*Notifier, error) {
	n := &Notifier{log: logger, cfg: cfg, store: store, blobs: blobs, client: client, secrets: secrets, links: links, metrics: m, now: time.Now}
	if n.cfg.SMTPTimeout == 0 {
		n.cfg.SMTPTimeout = DefaultSMTPTimeout
	}
	if cfg.SMTP != nil {
		n.mailer = &smtpMailer{server: *cfg.SMTP, timeout: n.cfg.SMTPTimeout}
	} else {
		m, err := newOutbox(cfg.OutboxDir)
		if err != nil {
			return nil, fmt.Errorf("notifier: %w", err)
		}
		n.mailer = m
	}
	n.email = channel{name: jobs.ChannelEmail, schedule: cfg.EmailSchedule, timeout: 2 * n.cfg.SMTPTimeout, send: n.sendEmail}
	n.callback = channel{name: jobs.ChannelCallback, schedule: cfg.CallbackSchedule, timeout: cfg.CallbackTimeout, send: n.sendCallback}
	logger.Info("deliveries ready", "mail", n.mailer.describe(), "service_webhook_secret", cfg.WebhookSecret != "",
		"callback_schedule", cfg.CallbackSchedule.String(), "email_schedule", cfg.EmailSchedule.String())
	return n, nil
}

// SetClock replaces the notifier's clock (tests).
func (n *Notifier) SetClock(now func() time.Time) { n.now = now }

// channel is what differs between email and callback.
type channel struct {
	name     string
	schedule retry.Schedule
	timeout  time.Duration // the context of one send
	send     func(ctx context.Context, log *slog.Logger, job *jobs.Job, known known) result
}

// known is what a send may take as given instead of reading it back from the
// blob store: set for the first attempt the worker makes as the job ends.
type known struct {
	// fresh: the attempt was claimed in the transaction that ended the job,
	// so no attempt ran before it and nothing is frozen yet.
	fresh bool
	// images are the outputs' bytes by output name (nil: read them).
	images map[string][]byte
}

func (n *Notifier) channel(name string) (channel, bool) {
	switch name {
	case jobs.ChannelEmail:
		return n.email, true
	case jobs.ChannelCallback:
		return n.callback, true
	}
	return channel{}, false
}

// result is how one send went.
type result struct {
	delivered bool
	final     bool   // failed for good: no retry
	code      string // with final
	message   string // a sentence for last_error: no secrets, no full address
	// retryAfter is the receiver's Retry-After, when it sent one.
	retryAfter    time.Duration
	hasRetryAfter bool
	statusCode    int    // HTTP status or SMTP reply code
	response      string // the first bytes of the receiver's answer, cleaned
}

func retryable(format string, args ...any) result {
	return result{message: fmt.Sprintf(format, args...)}
}

func failed(code, format string, args ...any) result {
	return result{final: true, code: code, message: fmt.Sprintf(format, args...)}
}

// maxRetryAfter bounds how far a receiver's Retry-After can postpone an attempt.
const maxRetryAfter = 24 * time.Hour

// nextDelay is the wait before the next attempt: the schedule's gap, or the
// receiver's Retry-After when it asks for more (up to a day). A receiver can
// postpone an attempt but never bring it earlier than the schedule.
func nextDelay(gap time.Duration, r result) time.Duration {
	if !r.hasRetryAfter {
		return gap
	}
	return max(gap, min(r.retryAfter, maxRetryAfter))
}

// Deliver makes attempt number attempt of job id's delivery on channel:
// claim it, send, record the outcome (and schedule the next attempt). It
// returns an error wrapping jobs.ErrDeliveryFailed when the delivery has
// failed for good, and another error when the claim could not be made (Redis
// trouble): the attempt should then run again.
func (n *Notifier) Deliver(ctx context.Context, name, id string, attempt int) error {
	log := n.log.With("job_id", id, "channel", name, "attempt", attempt)
	ch, ok := n.channel(name)
	if !ok {
		log.Error("unknown delivery channel; dropping it")
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	job, claim, reason, err := n.store.Claim(cctx, id, name, attempt)
	cancel()
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		log.Info("job expired or erased before its delivery; nothing to deliver")
		return nil
	case err != nil:
		log.Error("could not claim the attempt", "error", err)
		return err
	case claim == jobs.Pass:
		log.Info("attempt not sent", "reason", reason)
		return nil
	}
	return n.attempt(ctx, log, ch, job, attempt, known{})
}

// DeliverFirst makes the first attempt of the job's delivery on channel,
// which the transaction that ended the job claimed for the caller
// (jobs.Store.Succeed and Fail with direct): the worker calls it as the job
// ends, with the images it has just made (nil: read from the blob store),
// so that the attempt needs no trip through the queue, no claim and no
// reading back. It returns what Deliver returns.
func (n *Notifier) DeliverFirst(ctx context.Context, name string, job *jobs.Job, images map[string][]byte) error {
	log := n.log.With("job_id", job.ID, "channel", name, "attempt", 1)
	ch, ok := n.channel(name)
	d := job.Delivery(name)
	if !ok || d == nil || d.Attempts != 1 || d.Status != jobs.DeliveryPending {
		// Not claimed as the job ended: nothing of ours to send.
		log.Error("first attempt not claimed; not sending it")
		return nil
	}
	return n.attempt(ctx, log, ch, job, 1, known{fresh: true, images: images})
}

// attempt sends a claimed attempt and records its outcome (and schedules
// the next attempt).
func (n *Notifier) attempt(ctx context.Context, log *slog.Logger, ch channel, job *jobs.Job, attempt int, k known) error {
	if job.KeyName != "" {
		log = log.With("key_name", job.KeyName)
	}
	log.Info("delivering", "target", view.Target(ch.name, job.Target(ch.name)))
	sent := n.now()
	sctx, cancel := context.WithTimeout(ctx, ch.timeout)
	r := ch.send(sctx, log, job, k)
	cancel()
	d := job.Delivery(ch.name)
	o := n.outcome(ch, *d, attempt, sent, r)

	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := n.store.Record(rctx, job.ID, ch.name, attempt, o); err != nil {
		// An unrecorded attempt keeps its lease until it runs out; the
		// sweeper then counts it interrupted and schedules the next one.
		log.Warn("could not record the outcome of the attempt", "error", err, "delivered", o.Delivered, "last_error", o.Message)
		return nil
	}
	return n.report(log, ch, job.ID, o)
}

// Interrupted records the attempt of job id's delivery on channel whose
// lease ran out: its run died mid-way, so the attempt counts as failed (it
// may or may not have arrived) and the next one is scheduled. Like Deliver,
// it returns an error wrapping jobs.ErrDeliveryFailed when that was the
// last attempt.
func (n *Notifier) Interrupted(ctx context.Context, name, id string) error {
	ch, ok := n.channel(name)
	if !ok {
		return fmt.Errorf("unknown delivery channel %q", name)
	}
	var o jobs.Outcome
	done, err := n.store.Interrupt(ctx, id, name, func(_ *jobs.Job, d jobs.Delivery) jobs.Outcome {
		r := retryable("attempt %d was interrupted before it finished (the worker stopped); it may or may not have arrived", d.Attempts)
		at := n.now()
		if d.LastAttemptAt != nil {
			at = *d.LastAttemptAt
		}
		o = n.outcome(ch, d, d.Attempts, at, r)
		return o
	})
	if err != nil || !done {
		return err
	}
	log := n.log.With("job_id", id, "channel", name)
	log.Warn("an attempt's run stopped before it finished; counted as failed")
	return n.report(log, ch, id, o)
}

// outcome decides what follows a send: delivered, failed for good, or the
// next attempt's time by the schedule (counted within the delivery's
// current series of attempts).
func (n *Notifier) outcome(ch channel, d jobs.Delivery, attempt int, sent time.Time, r result) jobs.Outcome {
	now := n.now().UTC()
	entry := jobs.LogEntry{Attempt: attempt, At: sent.UTC(), DurationMS: now.Sub(sent).Milliseconds(),
		StatusCode: r.statusCode, Response: r.response}
	o := jobs.Outcome{Delivered: r.delivered, Final: r.final, Code: r.code, Message: r.message}
	if !r.delivered && !r.final {
		inSeries := attempt - max(d.SeriesStart, 1) + 1
		if gap, ok := ch.schedule.Delay(inSeries); ok {
			o.Next = now.Add(nextDelay(gap, r))
		} else {
			o.Final, o.Code = true, codes.RetriesExhausted
			o.Message = fmt.Sprintf("gave up after %d attempts; the last one failed: %s", inSeries, r.message)
		}
	}
	switch {
	case o.Delivered:
		entry.Outcome = jobs.OutcomeDelivered
	case o.Final:
		entry.Outcome, entry.Error = jobs.OutcomeFailed, o.Message
	default:
		entry.Outcome, entry.Error = jobs.OutcomeRetry, o.Message
	}
	o.Log = entry
	return o
}

// report logs and counts a recorded outcome; a delivery that failed for good
// is an error wrapping jobs.ErrDeliveryFailed.
func (n *Notifier) report(log *slog.Logger, ch channel, id string, o jobs.Outcome) error {
	switch {
	case o.Delivered:
		n.metrics.Delivery(ch.name, "delivered")
		log.Info("delivered")
		return nil
	case o.Final:
		n.metrics.Delivery(ch.name, "failed")
		log.Error("delivery failed", "error_code", o.Code, "last_error", o.Message)
		return fmt.Errorf("%s delivery of job %s: %w: %s: %s", ch.name, id, jobs.ErrDeliveryFailed, o.Code, o.Message)
	}
	n.metrics.Delivery(ch.name, "retry")
	log.Warn("attempt failed; will retry", "last_error", o.Message, "next_attempt_at", o.Next.Format(time.RFC3339Nano))
	return nil
}

// secretsFor are the secrets that sign a job's callbacks: its key's own,
// else the service's.
func (n *Notifier) secretsFor(job *jobs.Job) []string {
	if n.secrets != nil && job.KeyName != "" {
		if s := n.secrets.WebhookSecrets(job.KeyName); len(s) > 0 {
			return s
		}
	}
	if n.cfg.WebhookSecret != "" {
		return []string{n.cfg.WebhookSecret}
	}
	return nil
}

// cleanResponse keeps the first bytes of a receiver's answer that a client
// may see: printable text, with anything that looks like a secret left out.
// The whole answer is cleaned before it is cut, so a secret that crosses
// the cut is left out whole rather than kept as a piece too short to look
// like one.
func cleanResponse(b []byte) string {
	const keep = 256
	s := strings.ToValidUTF8(string(b), "")
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || r >= 0x20 && r != 0x7f && (r < 0x80 || r > 0x9f) {
			return r
		}
		return ' '
	}, s)
	s = secretAssignment.ReplaceAllString(s, "${1}[redacted]")
	s = secretToken.ReplaceAllString(s, "[redacted]")
	if len(s) > keep {
		cut := keep
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// secretAssignment is a credential by its name: token=…, "api_key": "…",
// Authorization: Bearer … (or Basic …), a bare "Bearer …"; secretToken is
// a webhook secret (whsec_…, whatever its length) or anything long and
// random-looking enough to be a key on its own (32+ characters of a token
// alphabet).
var (
	secretAssignment = regexp.MustCompile(`(?i)((?:(?:token|secret|passw(?:or)?d|api[_-]?key|access[_-]?key|auth(?:orization)?|signature|session|cookie|credential)s?["']?\s*[:=]\s*["']?(?:(?:bearer|basic|digest)\s+)?)|(?:bearer\s+))[^\s"'&,;}]+`)
	secretToken      = regexp.MustCompile(`whsec_[A-Za-z0-9+/=_-]*|[A-Za-z0-9+/_=-]{32,}`)
)
