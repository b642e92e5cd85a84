package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/view"
)

// Events fans the job changes every process publishes (Redis pub/sub, see
// jobs.Store.Subscribe) out to the event streams open on this process, so
// a stream follows its job whichever api or worker process changes it.
type Events struct {
	log *slog.Logger

	mu      sync.Mutex
	watches map[string]map[chan struct{}]struct{} // job id -> its streams' wake-ups

	// closing is closed by Close when the process stops, and every open
	// stream then ends: a stream never finishes by itself, and
	// http.Server.Shutdown would wait the whole shutdown timeout for it.
	closing   chan struct{}
	closeOnce sync.Once
}

// Stream limits.
const (
	MaxStreamsPerClient = 10
	streamLifetime      = 10 * time.Minute
	keepAliveEvery      = 15 * time.Second
	streamWriteTimeout  = 30 * time.Second
)

// NewEvents returns the fan-out of this process.
func NewEvents(log *slog.Logger) *Events {
	return &Events{log: log, watches: map[string]map[chan struct{}]struct{}{}, closing: make(chan struct{})}
}

// Close ends every open stream, at once: for a graceful shutdown
// (http.Server.RegisterOnShutdown). A client reconnects, with
// Last-Event-ID, to another api process and gets the current status.
func (e *Events) Close() { e.closeOnce.Do(func() { close(e.closing) }) }

// Run receives job changes until ctx ends, subscribing again whenever the
// subscription breaks. subscribe is the store's Subscribe on its "events"
// channel; a stream missed nothing that matters over a break, as every
// wake-up makes it read the record again.
func (e *Events) Run(ctx context.Context, subscribe func(ctx context.Context, fn func(string)) error) {
	for ctx.Err() == nil {
		err := subscribe(ctx, e.changed)
		if ctx.Err() != nil {
			return
		}
		e.log.Debug("event subscription lost; subscribing again", "error", err)
		e.wakeAll() // whatever changed meanwhile is read now
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// changed is a message "{id} {version}" of the events channel.
func (e *Events) changed(msg string) {
	id, _, _ := strings.Cut(msg, " ")
	e.mu.Lock()
	defer e.mu.Unlock()
	for ch := range e.watches[id] {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already waiting
		}
	}
}

func (e *Events) wakeAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, set := range e.watches {
		for ch := range set {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// watch follows job id: the returned channel says it changed, until stop.
func (e *Events) watch(id string) (<-chan struct{}, func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ch := make(chan struct{}, 1)
	if e.watches[id] == nil {
		e.watches[id] = map[chan struct{}]struct{}{}
	}
	e.watches[id][ch] = struct{}{}
	return ch, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		delete(e.watches[id], ch)
		if len(e.watches[id]) == 0 {
			delete(e.watches, id)
		}
	}
}

// handleEvents is GET /v1/thumbnails/{id}/events: Server-Sent Events. On
// connect one status event with the job, then a status event on every
// change and a delivery event on every attempt, until the job has ended
// with every delivery final, or streamLifetime has passed. Event ids grow
// with the record's version, so they increase across reconnects too.
func handleEvents(d Deps) echo.HandlerFunc {
	return func(c echo.Context) error {
		if d.Events == nil {
			return problem(codes.NotFound, "event streams are not served here")
		}
		// Watch before the record is read: a change made after the read then
		// wakes the stream. (Watching after it lost a change made in between,
		// and the stream sent a stale status and waited for good.)
		wake, stop := d.Events.watch(c.Param("id"))
		defer stop()
		job, err := loadJob(c, d.Store)
		if err != nil {
			return err
		}
		// The streams of a client are counted in Redis, across every API process.
		client, streamID := clientScope(c), newJobID()
		octx, ocancel := context.WithTimeout(c.Request().Context(), storageDeadline)
		ok, err := d.Store.OpenStream(octx, client, streamID, MaxStreamsPerClient)
		ocancel()
		if err != nil {
			return err
		}
		if !ok {
			p := problem(codes.TooManyStreams, fmt.Sprintf("this client already has %d event streams open; close one first", MaxStreamsPerClient))
			p.retryAfter = "10"
			return p
		}
		defer func() {
			cctx, ccancel := context.WithTimeout(context.Background(), storageDeadline)
			_ = d.Store.CloseStream(cctx, client, streamID)
			ccancel()
		}()
		h := c.Response().Header()
		h.Set(echo.HeaderContentType, "text/event-stream")
		h.Set(echo.HeaderCacheControl, "no-store")
		h.Set("X-Accel-Buffering", "no")
		c.Response().WriteHeader(http.StatusOK)
		s := &stream{c: c, links: d.Links}
		ctx, cancel := context.WithTimeout(c.Request().Context(), streamLifetime)
		defer cancel()
		if err := s.send(job); err != nil || s.finished(job) {
			return nil
		}
		keepAlive := time.NewTicker(keepAliveEvery)
		defer keepAlive.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-d.Events.closing: // the process stops
				return nil
			case <-keepAlive.C:
				s.deadline()
				if _, err := fmt.Fprint(c.Response(), ": keep-alive\n\n"); err != nil {
					return nil
				}
				c.Response().Flush()
				rctx, rcancel := context.WithTimeout(ctx, storageDeadline)
				_ = d.Store.RenewStream(rctx, client, streamID)
				rcancel()
			case <-wake:
				rctx, rcancel := context.WithTimeout(ctx, storageDeadline)
				job, err = d.Store.Get(rctx, job.ID)
				rcancel()
				if errors.Is(err, jobs.ErrNotFound) {
					return nil // erased or expired: the stream ends
				}
				if err != nil {
					continue // the next change or keep-alive tries again
				}
				if err := s.send(job); err != nil || s.finished(job) {
					return nil
				}
			}
		}
	}
}

// stream is one open event stream and what it has sent.
type stream struct {
	c          echo.Context
	links      view.Links
	version    int
	deliveries map[string]string // channel -> what was last sent of it
}

// send writes what changed since the last send: a status event with the
// job, and a delivery event for every delivery that moved.
func (s *stream) send(job *jobs.Job) error {
	if job.Version <= s.version {
		return nil
	}
	s.version = job.Version
	if err := s.event(job.Version*8, "status", view.Job(job, s.links)); err != nil {
		return err
	}
	// On connect the status event alone: it holds every delivery as it
	// stands; delivery events follow the attempts made after it.
	first := s.deliveries == nil
	if first {
		s.deliveries = map[string]string{}
	}
	for i, d := range job.Deliveries {
		seen := fmt.Sprintf("%s/%d/%d", d.Status, d.Attempts, len(d.Log))
		if s.deliveries[d.Channel] == seen {
			continue
		}
		s.deliveries[d.Channel] = seen
		if first || d.Attempts == 0 && d.Status == jobs.DeliveryPending {
			continue // nothing attempted since: the status event says it
		}
		if err := s.event(job.Version*8+1+i, "delivery", view.Delivery(job, d)); err != nil {
			return err
		}
	}
	s.c.Response().Flush()
	return nil
}

// deadline gives the next write streamWriteTimeout: a client that stops
// reading (its socket buffer full) ends its stream instead of holding it.
func (s *stream) deadline() {
	_ = http.NewResponseController(s.c.Response().Writer).SetWriteDeadline(time.Now().Add(streamWriteTimeout))
}

func (s *stream) event(id int, name string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	s.deadline()
	_, err = fmt.Fprintf(s.c.Response(), "id: %d\nevent: %s\ndata: %s\n\n", id, name, b)
	return err
}

// finished reports whether nothing more will happen to the job: it ended
// and every delivery is final.
func (s *stream) finished(job *jobs.Job) bool {
	if !job.Status.Ended() {
		return false
	}
	for _, d := range job.Deliveries {
		if d.Status == jobs.DeliveryPending {
			return false
		}
	}
	return true
}
