package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/thumbnail"
	"github.com/thumbnailed/thumbnailed/view"
)

// newJobID returns 128 random bits in lower-case base32.
func newJobID() string { return strings.ToLower(rand.Text()) }

var validJobID = regexp.MustCompile(`^[a-z2-7]{26}$`)

var validIdempotencyKey = regexp.MustCompile(`^[\x21-\x7e]{1,255}$`)

// bodyReadTimeout is how long a submit's body may take to arrive.
const bodyReadTimeout = 2 * time.Minute

// storageDeadline bounds the Redis and blob store calls of one request
// after its body has been read: trouble answers 503 within it, not a hang.
// It is under the 2 s the contract promises, leaving room to write the 503.
const storageDeadline = 1500 * time.Millisecond

func handleCreateThumbnail(logger *slog.Logger, cfg Config, d Deps, uploads *budget) echo.HandlerFunc {
	lim := limits{maxDimension: cfg.MaxDimension, maxOutputPixels: cfg.MaxOutputPixels,
		allowPrivateNetworks: cfg.AllowPrivateNetworks, engine: d.Engine}
	return func(c echo.Context) error {
		log := requestLog(c, logger)
		idemKey := c.Request().Header.Get("Idempotency-Key")
		if idemKey != "" && !validIdempotencyKey.MatchString(idemKey) {
			return invalid(map[string]string{"Idempotency-Key": "must be 1 to 255 visible ASCII characters"})
		}
		// A body sent byte by byte holds a connection and an upload: it has
		// bodyReadTimeout to arrive.
		_ = http.NewResponseController(c.Response().Writer).SetReadDeadline(time.Now().Add(bodyReadTimeout))
		id := newJobID()
		hold := &holding{b: uploads}
		defer hold.release()
		sink := &uploadSink{ctx: c.Request().Context(), id: id, blobs: d.Blobs, store: d.Store, engine: d.Engine,
			maxPixels: cfg.MaxPixels, ttl: cfg.ResultTTL, hold: hold}
		in, err := decodeRequest(c.Request(), cfg.MaxUploadBytes, sink.take)
		// An upload that was stored but does not become a job goes now (the
		// sweeper collects it otherwise), beside the answer rather than
		// before it: a stalled store must not hold up the 503.
		keepUpload := false
		defer func() {
			if sink.stored && !keepUpload {
				go dropUpload(d.Blobs, id, log)
			}
		}()
		if err != nil {
			return err
		}
		if bad := in.Valid(lim); len(bad) > 0 {
			return invalid(bad)
		}

		ctx, cancel := context.WithTimeout(c.Request().Context(), storageDeadline)
		defer cancel()
		req := in.jobRequest()
		job := jobs.New(id, jobOwner(c), req, time.Now(), cfg.ResultTTL)
		var idem *jobs.Idempotency
		if idemKey != "" {
			idem = &jobs.Idempotency{Scope: clientScope(c), Key: idemKey, Fingerprint: fingerprint(req, in.upload)}
		}
		saved, created, err := d.Store.Submit(ctx, job, idem)
		switch {
		case errors.Is(err, jobs.ErrKeyReused):
			return problem(codes.IdempotencyKeyReused,
				"this Idempotency-Key was already used with a different request; use a new key for a new request")
		case err != nil:
			// A submit whose answer timed out may have been written all the
			// same (a retry of the key then answers 200 with the job): its
			// upload stays. The sweeper deletes it at the reservation's time
			// if no job was made.
			keepUpload = errors.Is(err, jobs.ErrUnavailable)
			return err
		}
		c.Response().Header().Set(echo.HeaderLocation, view.JobPath(saved.ID))
		if !created {
			return c.JSON(http.StatusOK, view.Job(saved, d.Links))
		}
		keepUpload = true
		d.Metrics.Enqueued(jobs.KindThumbnail)
		args := []any{"job_id", id, "source", req.Source, "outputs", len(req.Outputs), "email", view.MaskEmail(req.Email),
			"callback", view.MaskURL(req.CallbackURL)}
		if in.upload != nil {
			args = append(args, "upload_bytes", in.upload.bytes)
		}
		if job.KeyName != "" {
			args = append(args, "key_name", job.KeyName)
		}
		log.Info("job accepted", args...)
		return c.JSON(http.StatusAccepted, view.Job(saved, d.Links))
	}
}

func dropUpload(blobs Blobs, id string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), storageDeadline)
	defer cancel()
	if err := blobs.Delete(ctx, id); err != nil {
		log.Warn("could not delete an upload that did not become a job; the sweeper will", "job_id", id, "error", err)
	}
}

// notFound is the answer for a job that is unknown, expired, erased or
// another key's: all look the same.
func notFound() *Problem {
	return problem(codes.NotFound, "no thumbnail job with this id (jobs expire after the result TTL)")
}

// loadJob finds the caller's job.
func loadJob(c echo.Context, store Store) (*jobs.Job, error) {
	id := c.Param("id")
	if !validJobID.MatchString(id) {
		return nil, notFound()
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), storageDeadline)
	defer cancel()
	job, err := store.Get(ctx, id)
	if errors.Is(err, jobs.ErrNotFound) {
		return nil, notFound()
	}
	if err != nil {
		return nil, err
	}
	if job.Owner != owner(c) {
		return nil, notFound()
	}
	return job, nil
}

func handleGetThumbnail(d Deps) echo.HandlerFunc {
	return func(c echo.Context) error {
		job, err := loadJob(c, d.Store)
		if err != nil {
			return err
		}
		c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
		return c.JSON(http.StatusOK, view.Job(job, d.Links))
	}
}

// handleListThumbnails is the caller's own jobs, newest first.
func handleListThumbnails(d Deps) echo.HandlerFunc {
	return func(c echo.Context) error {
		q := c.QueryParams()
		bad := map[string]string{}
		for name := range q {
			if name != "status" && name != "limit" && name != "cursor" {
				bad[name] = "is not a known parameter (status, limit, cursor)"
			}
		}
		status := jobs.Status(q.Get("status"))
		switch status {
		case "", jobs.StatusQueued, jobs.StatusProcessing, jobs.StatusSucceeded, jobs.StatusFailed:
		default:
			bad["status"] = "must be queued, processing, succeeded or failed"
		}
		limit := 20
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 100 {
				bad["limit"] = "must be a whole number from 1 to 100"
			}
			limit = n
		}
		if len(bad) > 0 {
			return invalid(bad)
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), storageDeadline)
		defer cancel()
		list, next, err := d.Store.List(ctx, clientScope(c), status, limit, q.Get("cursor"))
		if errors.Is(err, jobs.ErrBadCursor) {
			return invalid(map[string]string{"cursor": "is not a cursor this API gave"})
		}
		if err != nil {
			return err
		}
		page := struct {
			Items      []view.JobView `json:"items"`
			NextCursor string         `json:"next_cursor,omitempty"`
		}{Items: []view.JobView{}, NextCursor: next}
		for _, job := range list {
			if job.Owner == owner(c) {
				page.Items = append(page.Items, view.Job(job, d.Links))
			}
		}
		c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
		return c.JSON(http.StatusOK, page)
	}
}

// handleDeleteThumbnail erases a job: its record, upload and images. Work
// on it stops at its next step, and no push starts after the 204.
func handleDeleteThumbnail(logger *slog.Logger, d Deps) echo.HandlerFunc {
	return func(c echo.Context) error {
		job, err := loadJob(c, d.Store)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), storageDeadline)
		defer cancel()
		if err := d.Store.Erase(ctx, job.ID); errors.Is(err, jobs.ErrNotFound) {
			return notFound()
		} else if err != nil {
			return err
		}
		log := requestLog(c, logger)
		if err := d.Blobs.Delete(ctx, job.ID); err != nil {
			log.Warn("could not delete an erased job's images yet; the sweeper will", "job_id", job.ID, "error", err)
		}
		log.Info("job erased", "job_id", job.ID, "status", job.Status)
		return c.NoContent(http.StatusNoContent)
	}
}

// handleRedeliver sends a delivery again as a new series of attempts.
func handleRedeliver(d Deps) echo.HandlerFunc {
	return func(c echo.Context) error {
		job, err := loadJob(c, d.Store)
		if err != nil {
			return err
		}
		channel := c.Param("channel")
		dl := job.Delivery(channel)
		if dl == nil {
			return problem(codes.NotFound, fmt.Sprintf("this job has no %q delivery (channels: email, callback)", channel))
		}
		pending := func() *Problem {
			p := problem(codes.DeliveryPending, "this delivery is still being attempted; redeliver it once it has ended")
			p.retryAfter = "60"
			return p
		}
		if dl.Status == jobs.DeliveryPending {
			// Also while the job runs: its deliveries are pending until
			// they are made (the store would call that "no delivery").
			return pending()
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), storageDeadline)
		defer cancel()
		job, err = d.Store.Redeliver(ctx, job.ID, channel)
		switch {
		case errors.Is(err, jobs.ErrNotFound):
			return notFound()
		case errors.Is(err, jobs.ErrDeliveryPending):
			return pending()
		case errors.Is(err, jobs.ErrNoDelivery):
			return problem(codes.NotFound, "this job has no such delivery, or it has not ended yet")
		case err != nil:
			return err
		}
		return c.JSON(http.StatusAccepted, view.Job(job, d.Links))
	}
}

// handleImage is the first output, by API key (the shape earlier clients use).
func handleImage(d Deps) echo.HandlerFunc {
	return func(c echo.Context) error {
		job, err := loadJob(c, d.Store)
		if err != nil {
			return err
		}
		name := ""
		if len(job.Request.Outputs) > 0 {
			name = job.Request.Outputs[0].Name
		}
		return serveOutput(c, d, job, name)
	}
}

// handleOutput is one output, by signed link or by API key (linkOrKey has
// decided which, and checked it).
func handleOutput(d Deps) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Param("id")
		if !validJobID.MatchString(id) {
			return notFound()
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), storageDeadline)
		defer cancel()
		job, err := d.Store.Get(ctx, id)
		if errors.Is(err, jobs.ErrNotFound) {
			return notFound()
		}
		if err != nil {
			return err
		}
		if !signedLink(c) && job.Owner != owner(c) {
			return notFound()
		}
		return serveOutput(c, d, job, c.Param("name"))
	}
}

func serveOutput(c echo.Context, d Deps, job *jobs.Job, name string) error {
	switch job.Status {
	case jobs.StatusFailed:
		p := problem(codes.NotReady, "the job failed: "+job.Error.Message)
		p.Code, p.Type = job.Error.Code, problemTypeBase+job.Error.Code
		return p
	case jobs.StatusQueued, jobs.StatusProcessing:
		known := false
		for _, o := range job.Request.Outputs {
			known = known || o.Name == name
		}
		if !known {
			return problem(codes.NotFound, fmt.Sprintf("this job makes no output named %q", name))
		}
		p := problem(codes.NotReady, "the image is not ready yet ("+string(job.Status)+"); retry after the time in Retry-After")
		p.retryAfter = "1"
		return p
	}
	out := job.Result.Output(name)
	if out == nil {
		return problem(codes.NotFound, fmt.Sprintf("this job made no output named %q", name))
	}
	h := c.Response().Header()
	etag := `"` + out.ETag + `"`
	h.Set(echo.HeaderCacheControl, "private, max-age=3600, immutable")
	h.Set("ETag", etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if match := c.Request().Header.Get("If-None-Match"); match != "" && strings.Contains(match, etag) {
		return c.NoContent(http.StatusNotModified)
	}
	if c.Request().Method == http.MethodHead {
		h.Set(echo.HeaderContentType, out.ContentType)
		h.Set(echo.HeaderContentLength, strconv.Itoa(out.Bytes))
		return c.NoContent(http.StatusOK)
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), storageDeadline)
	defer cancel()
	image, err := d.Blobs.Get(ctx, job.ID, out.Blob())
	if errors.Is(err, blob.ErrNotFound) {
		return problem(codes.NotFound, "the image has expired")
	}
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, out.ContentType, image)
}

func handleHealthz(engine thumbnail.Engine) echo.HandlerFunc {
	body := map[string]any{"status": "ok", "engine": engine.Name(), "engine_version": engine.Version()}
	return func(c echo.Context) error {
		return c.JSON(http.StatusOK, body)
	}
}

// handleReadyz answers 200 when Redis and the blob store both answer.
func handleReadyz(d Deps) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), storageDeadline)
		defer cancel()
		for _, dep := range []struct {
			what string
			ping func(context.Context) error
		}{{"Redis", d.Store.Ping}, {"the blob store", d.Blobs.Ping}} {
			if err := dep.ping(ctx); err != nil {
				// Where Redis or the store lives is for the logs, not for
				// whoever can reach this port.
				requestLog(c, slog.Default()).Warn("not ready", "error", err)
				p := problem(codes.StorageUnavailable, dep.what+" does not answer")
				p.retryAfter = "5"
				return p
			}
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
	}
}
