// Package notifier pushes a finished job to its client: an email with the
// thumbnail (go-mail) and a signed callback POST (Standard Webhooks). Each
// delivery attempt is a gocraft/work job of its own; a failed attempt
// schedules the next one through the queue's scheduled set, so no worker
// waits, following one retry.Schedule per channel.
//
// The job record is the source of truth: every attempt first claims itself
// in the record (attempts, last_attempt_at), then sends, then records the
// outcome (delivered, failed with a code, or pending with next_attempt_at)
// and only then enqueues the next attempt. A handler that runs again for an
// attempt the record shows finished sends nothing: it only makes sure the
// next attempt is scheduled.
package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strconv"
	"time"

	"github.com/gocraft/work"

	"github.com/thumbnailed/thumbnailed/config"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/metrics"
	"github.com/thumbnailed/thumbnailed/retry"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/view"
	"github.com/thumbnailed/thumbnailed/webhook"
)

// Error codes of a delivery that failed for good (jobs.Delivery.ErrorCode).
const (
	CodeCallbackForbidden    = "callback_forbidden"     // the URL or its address is not allowed
	CodeCallbackGone         = "callback_gone"          // the receiver answered 410 Gone
	CodeRecipientInvalid     = "recipient_invalid"      // the address cannot be mailed
	CodeRecipientRejected    = "recipient_rejected"     // the mail server answered 5xx
	CodeRecipientRateLimited = "recipient_rate_limited" // too many emails to the address this hour
	CodeRetriesExhausted     = "retries_exhausted"      // every attempt of the schedule failed
	CodeInternal             = "internal_error"         // the message could not be built
)

// Defaults for zero Config fields: the service's documented defaults.
const (
	DefaultMailFrom                 = config.DefaultMailFrom
	DefaultOutboxDir                = config.DefaultOutboxDir
	DefaultCallbackTimeout          = config.DefaultCallbackTimeout
	DefaultSMTPTimeout              = 30 * time.Second
	DefaultEmailPerRecipientPerHour = config.DefaultEmailPerRecipientHour
	DefaultCallbackSchedule         = config.DefaultCallbackSchedule
	DefaultEmailSchedule            = config.DefaultEmailSchedule
)

// bookkeeping limits each step around an attempt: claiming it in the
// record, and recording its outcome and queuing the next one.
const bookkeeping = 15 * time.Second

// Config configures deliveries. Zero fields take the defaults above.
type Config struct {
	MailFrom                 string        // THUMBNAILED_MAIL_FROM
	SMTPURL                  string        // THUMBNAILED_SMTP_URL; "" = write .eml files to OutboxDir
	OutboxDir                string        // THUMBNAILED_OUTBOX_DIR
	SMTPTimeout              time.Duration // go-mail's WithTimeout (the dial, then each phase); an attempt may take twice it; default 30s
	WebhookSecret            string        // THUMBNAILED_WEBHOOK_SECRET; "" = unsigned callbacks
	CallbackTimeout          time.Duration // THUMBNAILED_CALLBACK_TIMEOUT
	CallbackSchedule         retry.Schedule
	EmailSchedule            retry.Schedule
	EmailPerRecipientPerHour int
	AllowPrivateNetworks     bool // THUMBNAILED_ALLOW_PRIVATE_NETWORKS
}

// withDefaults fills zero fields and returns every problem at once.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	if c.MailFrom == "" {
		c.MailFrom = DefaultMailFrom
	}
	if _, err := mail.ParseAddress(c.MailFrom); err != nil {
		errs = append(errs, fmt.Errorf("THUMBNAILED_MAIL_FROM %q is not an email address", c.MailFrom))
	}
	if c.SMTPURL != "" {
		if _, err := config.ParseSMTPURL(c.SMTPURL); err != nil {
			errs = append(errs, err)
		}
	} else if c.OutboxDir == "" {
		c.OutboxDir = DefaultOutboxDir
	}
	if c.SMTPTimeout == 0 {
		c.SMTPTimeout = DefaultSMTPTimeout
	}
	if c.SMTPTimeout < 0 {
		errs = append(errs, fmt.Errorf("the SMTP timeout %s must be positive", c.SMTPTimeout))
	}
	if c.WebhookSecret != "" {
		if err := webhook.ValidSecret(c.WebhookSecret); err != nil {
			errs = append(errs, errors.New("THUMBNAILED_WEBHOOK_SECRET must be whsec_ followed by base64 (make one with webhook.NewSecret)"))
		}
	}
	if c.CallbackTimeout == 0 {
		c.CallbackTimeout = DefaultCallbackTimeout
	}
	if c.CallbackTimeout < 0 {
		errs = append(errs, fmt.Errorf("THUMBNAILED_CALLBACK_TIMEOUT %s must be positive", c.CallbackTimeout))
	}
	if c.CallbackSchedule == nil {
		c.CallbackSchedule = retry.MustParse(DefaultCallbackSchedule)
	}
	if c.EmailSchedule == nil {
		c.EmailSchedule = retry.MustParse(DefaultEmailSchedule)
	}
	for name, s := range map[string]retry.Schedule{"THUMBNAILED_CALLBACK_RETRY_SCHEDULE": c.CallbackSchedule, "THUMBNAILED_EMAIL_RETRY_SCHEDULE": c.EmailSchedule} {
		for _, d := range s {
			if d <= 0 {
				errs = append(errs, fmt.Errorf("%s %s: every wait must be positive", name, s))
				break
			}
		}
	}
	if c.EmailPerRecipientPerHour == 0 {
		c.EmailPerRecipientPerHour = DefaultEmailPerRecipientPerHour
	}
	if c.EmailPerRecipientPerHour < 0 {
		errs = append(errs, fmt.Errorf("the email limit per recipient per hour %d must be positive", c.EmailPerRecipientPerHour))
	}
	return c, errors.Join(errs...)
}

// Notifier sends the deliveries of finished jobs.
type Notifier struct {
	log     *slog.Logger
	cfg     Config
	store   *jobs.Store
	queue   *jobs.Queue
	client  *safehttp.Client
	mailer  mailer
	metrics *metrics.Metrics
	now     func() time.Time

	email, callback channel
}

// New checks cfg and prepares the mailer: SMTP when cfg.SMTPURL is set,
// otherwise .eml files in cfg.OutboxDir (created if missing). client posts
// callbacks; nil makes one honouring cfg.AllowPrivateNetworks.
func New(logger *slog.Logger, cfg Config, store *jobs.Store, queue *jobs.Queue, client *safehttp.Client, m *metrics.Metrics) (*Notifier, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("notifier: %w", err)
	}
	if store == nil || queue == nil {
		return nil, errors.New("notifier: a store and a queue are required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if client == nil {
		client = safehttp.New(safehttp.Options{AllowPrivate: cfg.AllowPrivateNetworks})
	}
	n := &Notifier{log: logger, cfg: cfg, store: store, queue: queue, client: client, metrics: m, now: time.Now}
	if cfg.SMTPURL != "" {
		server, _ := config.ParseSMTPURL(cfg.SMTPURL) // checked by withDefaults
		n.mailer = &smtpMailer{server: server, timeout: cfg.SMTPTimeout}
	} else {
		m, err := newOutbox(cfg.OutboxDir)
		if err != nil {
			return nil, fmt.Errorf("notifier: %w", err)
		}
		n.mailer = m
	}
	n.email = channel{name: jobs.ChannelEmail, jobType: jobs.TypeDeliverEmail, schedule: cfg.EmailSchedule,
		timeout: cfg.SMTPTimeout, longest: 2 * cfg.SMTPTimeout, send: n.sendEmail}
	n.callback = channel{name: jobs.ChannelCallback, jobType: jobs.TypeDeliverCallback, schedule: cfg.CallbackSchedule,
		timeout: cfg.CallbackTimeout, longest: cfg.CallbackTimeout, send: n.sendCallback}
	logger.Info("deliveries ready", "mail", n.mailer.describe(), "signed_callbacks", cfg.WebhookSecret != "",
		"callback_schedule", cfg.CallbackSchedule.String(), "email_schedule", cfg.EmailSchedule.String())
	return n, nil
}

// JobEnded queues the first attempt of every delivery of a job that has
// just ended, succeeded or failed. It is safe to call more than once (for
// example again when a re-run finds the job already ended): it queues only
// deliveries that have not started, and a duplicate attempt sends nothing.
func (n *Notifier) JobEnded(ctx context.Context, job *jobs.Job) error {
	if !job.Status.Ended() {
		return fmt.Errorf("notifier: job %s has not ended (status %s)", job.ID, job.Status)
	}
	var errs []error
	for _, d := range job.Deliveries {
		log := n.log.With("job_id", job.ID, "channel", d.Channel)
		if d.Status != jobs.DeliveryPending || d.Attempts > 0 {
			continue
		}
		ch, ok := n.channel(d.Channel)
		if !ok {
			log.Error("unknown delivery channel; not delivered")
			continue
		}
		if err := n.queue.EnqueueDelivery(ctx, ch.jobType, job.ID, 1, 0); err != nil {
			errs = append(errs, err)
			log.Error("could not queue the delivery", "error", err)
			continue
		}
		log.Info("delivery queued", "target", view.Target(d.Channel, d.Target))
	}
	return errors.Join(errs...)
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

// DeliverEmail is the gocraft/work handler of jobs.TypeDeliverEmail.
// Register it with work.JobOptions{MaxFails: 1}: it schedules its own
// retries and returns an error only when the delivery has failed for good.
func (n *Notifier) DeliverEmail(j *work.Job) error { return n.handle(j, n.email) }

// DeliverCallback is the gocraft/work handler of jobs.TypeDeliverCallback.
// Register it with work.JobOptions{MaxFails: 1}, like DeliverEmail.
func (n *Notifier) DeliverCallback(j *work.Job) error { return n.handle(j, n.callback) }

// channel is what differs between email and callback.
type channel struct {
	name     string
	jobType  string
	schedule retry.Schedule
	timeout  time.Duration // the context of one attempt
	longest  time.Duration // the longest an attempt can take (go-mail's timeouts restart once)
	send     func(ctx context.Context, log *slog.Logger, job *jobs.Job) outcome
}

// held is the longest a run can hold an attempt: the claim sets
// last_attempt_at, then the send takes at most longest and recording the
// outcome at most bookkeeping. A run that holds it longer has died.
func (ch channel) held() time.Duration { return ch.longest + bookkeeping }

// outcome is how one attempt went.
type outcome struct {
	delivered bool
	final     bool   // failed for good: no retry
	code      string // with final
	message   string // a sentence for last_error: no secrets, no full address
	// retryAfter is the receiver's Retry-After, when it sent one.
	retryAfter    time.Duration
	hasRetryAfter bool
}

func retryable(format string, args ...any) outcome {
	return outcome{message: fmt.Sprintf(format, args...)}
}

func failed(code, format string, args ...any) outcome {
	return outcome{final: true, code: code, message: fmt.Sprintf(format, args...)}
}

// minRetryAfter keeps a receiver's "Retry-After: 0" from turning retries
// into a tight loop.
const minRetryAfter = time.Second

// nextDelay is the wait before the next attempt: the schedule's gap, or the
// receiver's Retry-After when it asks for less; never more than the gap, so
// a receiver cannot push a delivery past the schedule, and never less than
// minRetryAfter (unless the gap itself is shorter).
func nextDelay(gap time.Duration, o outcome) time.Duration {
	if !o.hasRetryAfter {
		return gap
	}
	return min(max(o.retryAfter, minRetryAfter), gap)
}

// errNoChange leaves the record as it is.
var errNoChange = errors.New("no change")

// what a run of an attempt must do, decided against the record.
type decision int

const (
	doSend        decision = iota
	doSkip                 // the delivery ended, or a later attempt owns it
	doWait                 // another run of this attempt is in progress
	doReschedule           // this attempt finished: make sure the next is queued
	doInterrupted          // a run of this attempt died mid-way: count it failed
)

// handle runs one delivery attempt: claim it, send, record the outcome,
// queue the next attempt.
func (n *Notifier) handle(j *work.Job, ch channel) error {
	id := j.ArgString(jobs.ArgJobID)
	rawAttempt := j.ArgString(jobs.ArgAttempt)
	log := n.log.With("job_id", id, "channel", ch.name)
	if err := j.ArgError(); err != nil {
		log.Error("delivery job without its arguments", "error", err)
		return fmt.Errorf("%s delivery job %s: %w", ch.name, j.ID, err)
	}
	attempt, err := strconv.Atoi(rawAttempt)
	if err != nil || attempt < 1 {
		log.Error("delivery job with a bad attempt number", "attempt", rawAttempt)
		return fmt.Errorf("%s delivery of job %s: bad attempt number %q", ch.name, id, rawAttempt)
	}
	log = log.With("attempt", attempt)

	// gocraft/work gives no context: the handler makes its own deadlines,
	// one for each step, so a slow send never leaves the outcome unwritten.
	ctx, cancel := context.WithTimeout(context.Background(), bookkeeping)
	var job *jobs.Job
	var what decision
	err = untilDone(ctx, func() (err error) {
		job, what, err = n.claim(ctx, ch, id, attempt)
		return err
	})
	cancel()
	if errors.Is(err, jobs.ErrNotFound) {
		log.Warn("job expired before its delivery; nothing to deliver")
		return nil
	}
	if err != nil {
		log.Error("could not read or claim the delivery", "error", err)
		return fmt.Errorf("%s delivery of job %s attempt %d: %w", ch.name, id, attempt, err)
	}
	watchdog := j.ArgString(jobs.ArgWatchdog) != ""
	switch what {
	case doSkip:
		return nil
	case doWait:
		// Another run holds this attempt. If its worker dies, nothing would
		// run the attempt again: come back once the run must have ended, and
		// count it interrupted then if it has not.
		d := job.Delivery(ch.name)
		wait := ch.held() - n.now().Sub(*d.LastAttemptAt)
		ctx, cancel := context.WithTimeout(context.Background(), bookkeeping)
		defer cancel()
		if err := n.queue.EnqueueDeliveryCheck(ctx, ch.jobType, id, attempt, max(wait, time.Second)); err != nil {
			log.Error("could not queue a check of the attempt in progress", "error", err)
			return err
		}
		return nil
	case doReschedule:
		if watchdog {
			// The run this check watched finished and queued the next attempt itself.
			return nil
		}
		d := job.Delivery(ch.name)
		log.Info("attempt already finished; making sure the next one is queued", "next_attempt_at", d.NextAttemptAt)
		ctx, cancel := context.WithTimeout(context.Background(), bookkeeping)
		defer cancel()
		if err := n.queue.EnqueueDelivery(ctx, ch.jobType, id, attempt+1, d.NextAttemptAt.Sub(n.now())); err != nil {
			log.Error("could not queue the next attempt", "error", err)
			return err
		}
		return nil
	case doInterrupted:
		log.Warn("the previous run of this attempt stopped before it finished; counting it failed")
		return n.finish(log, ch, id, attempt, retryable(
			"attempt %d was interrupted before it finished (the worker stopped); it may or may not have arrived", attempt))
	}

	log.Info("delivering", "target", view.Target(ch.name, job.Delivery(ch.name).Target))
	ctx, cancel = context.WithTimeout(context.Background(), ch.timeout)
	o := ch.send(ctx, log, job)
	cancel()
	return n.finish(log, ch, id, attempt, o)
}

// claim decides what this run of attempt does and, when it sends, marks the
// attempt started in the record in the same transaction, so two runs of the
// same attempt never both send.
func (n *Notifier) claim(ctx context.Context, ch channel, id string, attempt int) (*jobs.Job, decision, error) {
	job, err := n.store.Get(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	log := n.log.With("job_id", id, "channel", ch.name, "attempt", attempt)
	if job.Delivery(ch.name) == nil {
		log.Error("the job has no such delivery; nothing to deliver")
		return job, doSkip, nil
	}
	now := n.now().UTC()
	inProgressFor := ch.held()
	var what decision
	var seen jobs.Delivery
	var status jobs.Status
	job, err = n.store.UpdateDelivery(ctx, id, ch.name, func(job *jobs.Job, d *jobs.Delivery) error {
		status, seen = job.Status, *d
		switch {
		case !job.Status.Ended(), d.Status != jobs.DeliveryPending, d.Attempts > attempt:
			what = doSkip
		case d.Attempts == attempt && d.NextAttemptAt != nil:
			what = doReschedule
		case d.Attempts == attempt && d.LastAttemptAt != nil && now.Sub(*d.LastAttemptAt) < inProgressFor:
			what = doWait
		case d.Attempts == attempt:
			what = doInterrupted
		default:
			what = doSend
			d.Attempts = attempt
			d.LastAttemptAt = &now
			d.NextAttemptAt = nil
			return nil
		}
		return errNoChange
	})
	if errors.Is(err, errNoChange) {
		err = nil
	}
	if err != nil {
		return job, what, err
	}
	switch {
	case what == doSkip && !status.Ended():
		log.Error("delivery of a job that has not ended; skipped", "status", status)
	case what == doSkip && seen.Status != jobs.DeliveryPending:
		log.Info("delivery already ended; skipped", "status", seen.Status)
	case what == doSkip:
		log.Info("a later attempt already ran; skipped", "attempts", seen.Attempts)
	case what == doWait:
		log.Info("this attempt is in progress in another run; skipped", "last_attempt_at", seen.LastAttemptAt)
	}
	return job, what, nil
}

// finish records how the attempt went and queues the next one. It returns
// an error only when the delivery failed for good (or the record could not
// be written), so that gocraft/work puts the job in its dead set.
func (n *Notifier) finish(log *slog.Logger, ch channel, id string, attempt int, o outcome) error {
	ctx, cancel := context.WithTimeout(context.Background(), bookkeeping)
	defer cancel()
	now := n.now().UTC()
	var delay time.Duration
	if !o.delivered && !o.final {
		gap, ok := ch.schedule.Delay(attempt)
		if ok {
			delay = nextDelay(gap, o)
		} else {
			o = failed(CodeRetriesExhausted, "gave up after %d attempts; the last one failed: %s", attempt, o.message)
		}
	}
	record := func(_ *jobs.Job, d *jobs.Delivery) error {
		if d.Status != jobs.DeliveryPending || d.Attempts != attempt || d.NextAttemptAt != nil {
			return errNoChange // another run already recorded this attempt, or a later one started
		}
		switch {
		case o.delivered:
			d.Status = jobs.DeliveryDelivered
			d.NextAttemptAt, d.LastError, d.ErrorCode = nil, "", ""
		case o.final:
			d.Status = jobs.DeliveryFailed
			d.NextAttemptAt, d.LastError, d.ErrorCode = nil, o.message, o.code
		default:
			next := now.Add(delay)
			d.NextAttemptAt, d.LastError = &next, o.message
		}
		return nil
	}
	err := untilDone(ctx, func() error {
		_, err := n.store.UpdateDelivery(ctx, id, ch.name, record)
		return err
	})
	if errors.Is(err, errNoChange) {
		log.Warn("the delivery moved on while this attempt ran; outcome not recorded", "delivered", o.delivered, "last_error", o.message)
		return nil
	}
	if err != nil {
		log.Error("could not record the outcome of the attempt", "error", err, "delivered", o.delivered, "last_error", o.message)
		return fmt.Errorf("%s delivery of job %s attempt %d: record the outcome: %w", ch.name, id, attempt, err)
	}
	switch {
	case o.delivered:
		n.metrics.Delivery(ch.name, "delivered")
		log.Info("delivered")
		return nil
	case o.final:
		n.metrics.Delivery(ch.name, "failed")
		log.Error("delivery failed", "error_code", o.code, "last_error", o.message)
		return fmt.Errorf("%s delivery of job %s failed: %s: %s", ch.name, id, o.code, o.message)
	}
	n.metrics.Delivery(ch.name, "retry")
	log.Warn("attempt failed; will retry", "last_error", o.message, "next_attempt_in", delay.String())
	if err := untilDone(ctx, func() error { return n.queue.EnqueueDelivery(ctx, ch.jobType, id, attempt+1, delay) }); err != nil {
		log.Error("could not queue the next attempt", "error", err)
		return err
	}
	return nil
}

// untilDone retries a step of bookkeeping whose Redis call failed (a restart,
// a failover) until it succeeds or ctx ends: an attempt that was sent but
// not recorded would otherwise stay pending for good.
func untilDone(ctx context.Context, step func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := step()
		if err == nil || errors.Is(err, errNoChange) || errors.Is(err, jobs.ErrNotFound) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
