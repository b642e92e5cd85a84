package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/thumbnail"
	"github.com/thumbnailed/thumbnailed/view"
)

// newJobID returns 128 random bits in lower-case base32.
func newJobID() string { return strings.ToLower(rand.Text()) }

var validJobID = regexp.MustCompile(`^[a-z2-7]{26}$`)

var validIdempotencyKey = regexp.MustCompile(`^[\x21-\x7e]{1,255}$`)

func handleCreateThumbnail(logger *slog.Logger, cfg Config, store Store, queue Enqueuer, engine thumbnail.Engine) echo.HandlerFunc {
	lim := limits{maxDimension: cfg.MaxDimension, allowPrivateNetworks: cfg.AllowPrivateNetworks, engine: engine}
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		log := requestLog(c, logger)

		idemKey := c.Request().Header.Get("Idempotency-Key")
		if idemKey != "" && !validIdempotencyKey.MatchString(idemKey) {
			return invalid(map[string]string{"Idempotency-Key": "must be 1 to 255 visible ASCII characters"})
		}
		in, err := decodeRequest(c.Request(), cfg.MaxUploadBytes)
		if err != nil {
			return err
		}
		if bad := in.Valid(lim); len(bad) > 0 {
			return invalid(bad)
		}
		if in.image != nil {
			if p := checkUpload(in.image, cfg.MaxPixels, engine); p != nil {
				return p
			}
		}

		req := in.jobRequest()
		id := newJobID()
		scope := clientScope(c)
		if idemKey != "" {
			fp := fingerprint(req, in.image)
			firstID, firstFP, claimed, err := store.Claim(ctx, scope, idemKey, fp, id)
			if err != nil {
				return err
			}
			if !claimed {
				if firstFP != fp {
					return problem(http.StatusUnprocessableEntity, "idempotency_key_reused",
						"this Idempotency-Key was already used with a different request; use a new key for a new request")
				}
				job, err := store.Get(ctx, firstID)
				if err != nil {
					return err
				}
				c.Response().Header().Set(echo.HeaderLocation, view.JobPath(job.ID))
				return c.JSON(http.StatusOK, view.Job(job))
			}
		}

		job := &jobs.Job{
			ID:        id,
			Owner:     owner(c),
			Status:    jobs.StatusQueued,
			CreatedAt: time.Now().UTC(),
			Request:   req,
		}
		if req.Email != "" {
			job.Deliveries = append(job.Deliveries, jobs.Delivery{Channel: jobs.ChannelEmail, Target: view.MaskEmail(req.Email), Status: jobs.DeliveryPending})
		}
		if req.CallbackURL != "" {
			job.Deliveries = append(job.Deliveries, jobs.Delivery{Channel: jobs.ChannelCallback, Target: view.MaskURL(req.CallbackURL), Status: jobs.DeliveryPending})
		}
		if err := store.Create(ctx, job, in.image); err != nil {
			releaseKey(store, scope, idemKey, log)
			return err
		}
		if err := queue.EnqueueThumbnail(ctx, id); err != nil {
			// The record exists but no worker will ever see it; say so now
			// rather than leave a job queued forever.
			log.Error("could not queue job", "job_id", id, "error", err)
			releaseKey(store, scope, idemKey, log)
			p := problem(http.StatusServiceUnavailable, "queue_unavailable", "the job could not be queued; try again shortly")
			p.retryAfter = "5"
			return p
		}
		log.Info("job accepted", "job_id", id, "source", req.Source, "width", req.Width, "height", req.Height,
			"fit", req.Fit, "format", req.Format, "upload_bytes", len(in.image),
			"email", view.MaskEmail(req.Email), "callback", view.MaskURL(req.CallbackURL))
		c.Response().Header().Set(echo.HeaderLocation, view.JobPath(id))
		return c.JSON(http.StatusAccepted, view.Job(job))
	}
}

func releaseKey(store Store, scope, key string, log *slog.Logger) {
	if key == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := store.Release(ctx, scope, key); err != nil {
		log.Warn("could not release idempotency key", "error", err)
	}
}

// checkUpload sniffs the upload's bytes (never its name or declared type) and
// reads its header, so what can be refused at once is refused at submit.
func checkUpload(image []byte, maxPixels int64, engine thumbnail.Engine) *Problem {
	h, err := thumbnail.ReadHeader(image)
	var te *thumbnail.Error
	if err != nil && errors.As(err, &te) {
		switch te.Code {
		case thumbnail.CodeUnsupportedFormat:
			return problem(http.StatusUnsupportedMediaType, te.Code, te.Message)
		default:
			return problem(http.StatusUnprocessableEntity, te.Code, te.Message)
		}
	}
	if err != nil {
		return problem(http.StatusUnprocessableEntity, thumbnail.CodeCorruptImage, "the image header could not be read")
	}
	if !engine.Accepts(h.Format) {
		return problem(http.StatusUnsupportedMediaType, thumbnail.CodeUnsupportedFormat,
			fmt.Sprintf("%s images need the libvips engine; this server runs the %s engine", h.Format, engine.Name()))
	}
	if px := int64(h.Width) * int64(h.Height); px > maxPixels {
		return problem(http.StatusUnprocessableEntity, thumbnail.CodeTooManyPixels,
			fmt.Sprintf("the image is %dx%d pixels (%d); the limit is %d pixels", h.Width, h.Height, px, maxPixels))
	}
	return nil
}

// loadJob finds the caller's job; another key's job is as unknown as a missing one.
func loadJob(c echo.Context, store Store) (*jobs.Job, error) {
	id := c.Param("id")
	notFound := problem(http.StatusNotFound, "not_found", "no thumbnail job with this id (jobs expire after the result TTL)")
	if !validJobID.MatchString(id) {
		return nil, notFound
	}
	job, err := store.Get(c.Request().Context(), id)
	if errors.Is(err, jobs.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	if job.Owner != owner(c) {
		return nil, notFound
	}
	return job, nil
}

func handleGetThumbnail(store Store) echo.HandlerFunc {
	return func(c echo.Context) error {
		job, err := loadJob(c, store)
		if err != nil {
			return err
		}
		c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
		return c.JSON(http.StatusOK, view.Job(job))
	}
}

func handleGetThumbnailImage(store Store) echo.HandlerFunc {
	return func(c echo.Context) error {
		job, err := loadJob(c, store)
		if err != nil {
			return err
		}
		switch job.Status {
		case jobs.StatusFailed:
			p := problem(http.StatusConflict, job.Error.Code, "the job failed: "+job.Error.Message)
			return p
		case jobs.StatusQueued, jobs.StatusProcessing:
			p := problem(http.StatusConflict, "not_ready", "the thumbnail is not ready yet ("+string(job.Status)+"); retry after the time in Retry-After")
			p.retryAfter = "1"
			return p
		}
		image, err := store.Image(c.Request().Context(), job.ID)
		if errors.Is(err, jobs.ErrNotFound) {
			return problem(http.StatusNotFound, "not_found", "the thumbnail has expired")
		}
		if err != nil {
			return err
		}
		sum := sha256.Sum256(image)
		etag := `"` + hex.EncodeToString(sum[:16]) + `"`
		h := c.Response().Header()
		h.Set(echo.HeaderCacheControl, "private, max-age=3600, immutable")
		h.Set("ETag", etag)
		h.Set("X-Content-Type-Options", "nosniff")
		if match := c.Request().Header.Get("If-None-Match"); match != "" && strings.Contains(match, etag) {
			return c.NoContent(http.StatusNotModified)
		}
		return c.Blob(http.StatusOK, job.Result.ContentType, image)
	}
}

func handleHealthz(engine thumbnail.Engine) echo.HandlerFunc {
	body := map[string]any{"status": "ok", "engine": engine.Name(), "engine_version": engine.Version()}
	return func(c echo.Context) error {
		return c.JSON(http.StatusOK, body)
	}
}

func handleReadyz(store Store) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := store.Ping(ctx); err != nil {
			p := problem(http.StatusServiceUnavailable, "redis_unavailable", "Redis does not answer: "+err.Error())
			p.retryAfter = "5"
			return p
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
	}
}
