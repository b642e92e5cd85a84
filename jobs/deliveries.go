package jobs

import (
	"context"
	"errors"
	"time"
)

// ClaimResult says whether a run of a delivery attempt sends.
type ClaimResult int

const (
	// Send: the attempt is claimed in the record and holds its lease.
	Send ClaimResult = iota
	// Pass: nothing to send (see the reason).
	Pass
)

// ErrDeliveryPending: a redelivery was asked while the delivery is still
// being attempted.
var ErrDeliveryPending = errors.New("the delivery is still pending")

// ErrDeliveryFailed marks a delivery that failed for good (its attempt was
// final, or the schedule ran out).
var ErrDeliveryFailed = errors.New("the delivery failed for good")

// ErrNoDelivery: the job has no delivery on that channel.
var ErrNoDelivery = errors.New("the job has no such delivery")

// Claim decides whether this run of attempt sends and, when it does, marks
// the attempt started in the record and takes its lease in the same
// transaction, so two runs of one attempt never both send. reason says why
// a run passes.
func (s *Store) Claim(ctx context.Context, id, channel string, attempt int) (job *Job, result ClaimResult, reason string, err error) {
	job, err = s.update(ctx, id, func(job *Job, t *tx) error {
		// The function runs again when another writer changed the record
		// meanwhile: decide afresh from the record as it is now.
		result, reason = Pass, ""
		d := job.Delivery(channel)
		switch {
		case d == nil:
			reason = "the job has no such delivery"
		case !job.Status.Ended():
			reason = "the job has not ended"
		case d.Status != DeliveryPending:
			reason = "the delivery has ended (" + d.Status + ")"
		case d.Attempts >= attempt:
			reason = "this attempt already ran or is running"
		case d.Attempts != attempt-1 || attempt != d.SeriesStart && d.NextAttemptAt == nil:
			reason = "the attempt before it has not finished"
		default:
			result = Send
		}
		if result != Send {
			return errSkip
		}
		d.Attempts = attempt
		d.LastAttemptAt = &t.now
		d.NextAttemptAt = nil
		t.takeLease(channel, id)
		return nil
	})
	return job, result, reason, err
}

// Outcome is how one delivery attempt went, as the notifier decided.
type Outcome struct {
	Delivered bool
	Final     bool      // failed for good, with Code
	Code      string    // with Final
	Message   string    // for last_error: no secrets, no full address
	Next      time.Time // neither delivered nor final: when the next attempt runs
	Log       LogEntry  // the attempt's entry in the delivery's log
}

// ErrAttemptMoved: the attempt's outcome was already recorded, or a later
// attempt started, so this outcome was not written.
var ErrAttemptMoved = errors.New("the delivery moved on while this attempt ran")

// Record writes the outcome of attempt, releases its lease and, when
// another attempt follows, schedules it: all in one transaction, so an
// attempt that was sent is never left without its outcome or its next
// attempt.
func (s *Store) Record(ctx context.Context, id, channel string, attempt int, o Outcome) (*Job, error) {
	return s.update(ctx, id, func(job *Job, t *tx) error {
		d := job.Delivery(channel)
		if d == nil || d.Status != DeliveryPending || d.Attempts != attempt || d.NextAttemptAt != nil {
			return ErrAttemptMoved
		}
		s.apply(job, d, t, o)
		return nil
	})
}

// Interrupt records the attempt of channel whose lease ran out (its run
// died mid-way) with the outcome that outcomeFor gives for it. It does
// nothing when the lease is alive again or the attempt has been recorded.
func (s *Store) Interrupt(ctx context.Context, id, channel string, outcomeFor func(*Job, Delivery) Outcome) (bool, error) {
	return s.takeBack(ctx, channel, id, func(job *Job) bool {
		d := job.Delivery(channel)
		return d != nil && d.Status == DeliveryPending && d.NextAttemptAt == nil && d.Attempts > 0
	}, func(job *Job, t *tx) {
		d := job.Delivery(channel)
		s.apply(job, d, t, outcomeFor(job, *d))
	})
}

func (s *Store) apply(job *Job, d *Delivery, t *tx, o Outcome) {
	d.Log = append(d.Log, o.Log)
	if len(d.Log) > MaxLog {
		d.Log = d.Log[len(d.Log)-MaxLog:]
	}
	switch {
	case o.Delivered:
		d.Status = DeliveryDelivered
		d.NextAttemptAt, d.LastError, d.ErrorCode = nil, "", ""
	case o.Final:
		d.Status = DeliveryFailed
		d.NextAttemptAt, d.LastError, d.ErrorCode = nil, o.Message, o.Code
	default:
		next := o.Next.UTC()
		d.NextAttemptAt, d.LastError = &next, o.Message
		t.due(job.work(d.Channel, d.Attempts+1), next)
	}
	t.dropLease(d.Channel, job.ID)
}

// Redeliver sends a delivery that has ended again, as a new series of
// attempts that starts now; its attempts and log go on counting.
func (s *Store) Redeliver(ctx context.Context, id, channel string) (*Job, error) {
	return s.update(ctx, id, func(job *Job, t *tx) error {
		d := job.Delivery(channel)
		switch {
		case d == nil:
			return ErrNoDelivery
		case !job.Status.Ended() || d.Status == DeliveryPending:
			return ErrDeliveryPending // the delivery has not ended: nothing to send again yet
		}
		d.Status, d.ErrorCode, d.NextAttemptAt = DeliveryPending, "", nil
		d.SeriesStart = d.Attempts + 1
		t.push(job.work(channel, d.SeriesStart))
		return nil
	})
}
