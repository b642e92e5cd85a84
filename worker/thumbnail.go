package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/gocraft/work"

	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/thumbnail"
	"github.com/thumbnailed/thumbnailed/view"
)

// Error codes the worker adds to the pipeline's own (DESIGN.md lists them).
const (
	CodeSourceNotFound    = "source_not_found"
	CodeSourceUnreachable = "source_unreachable"
	CodeSourceForbidden   = "source_forbidden"
	CodeSourceTooLarge    = "source_too_large"
	CodeTimeout           = "timeout"
	CodeInternal          = "internal_error"
)

// failure is why a run did not make a thumbnail: a code and message for the
// client, and whether trying again later could help.
type failure struct {
	code      string
	message   string
	transient bool
	err       error
}

func (f *failure) Error() string { return f.code + ": " + f.message }
func (f *failure) Unwrap() error { return f.err }

func (w *Worker) handleThumbnail(j *work.Job) error {
	id := j.ArgString(jobs.ArgJobID)
	if err := j.ArgError(); err != nil || id == "" {
		w.log.Error("thumbnail job without a job id; dropping it", "gocraft_job_id", j.ID)
		return nil
	}
	log := w.log.With("job_id", id, "attempt_fails", j.Fails)

	// The library has no context or job timeout: this deadline bounds the
	// whole run, fetch and pipeline included.
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.JobTimeout)
	defer cancel()

	job, begin, err := w.store.Begin(ctx, id, maxCrashes, w.cfg.StaleAfter)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		log.Warn("job record expired before the job ran; dropping it")
		return nil
	case err != nil:
		// Redis trouble: let the queue retry the whole job.
		log.Error("could not start job", "error", err)
		return err
	case begin == jobs.Skip:
		// A re-run of an ended job may follow a crash between ending it and
		// queuing its deliveries: make sure they are queued (JobEnded only
		// queues deliveries that have not started).
		log.Info("job already ended; skipping the re-run")
		w.ended(ctx, log, job)
		return nil
	case begin == jobs.Crashed:
		w.metrics.Finished(jobs.TypeThumbnail, string(jobs.StatusFailed), jobs.CodeWorkerCrashed)
		log.Error("job failed: its runs kept crashing the worker", "crashes", job.Crashes)
		w.ended(ctx, log, job)
		return nil
	}
	log.Info("job started", "attempt", job.Attempts)

	stopBeat := w.heartbeat(id, log)
	start := time.Now()
	result, image, fail := w.run(ctx, job)
	w.metrics.Stage("total", time.Since(start))
	stopBeat()

	// The run's context may be spent; recording the outcome gets its own.
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()

	if fail == nil {
		done, ended, err := w.store.Succeed(rctx, id, result, image)
		if err != nil {
			log.Error("could not store the thumbnail", "error", err)
			return err
		}
		if ended {
			w.metrics.Finished(jobs.TypeThumbnail, string(jobs.StatusSucceeded), "")
			log.Info("job succeeded", "width", result.Width, "height", result.Height, "bytes", len(image),
				"duration_ms", time.Since(*done.StartedAt).Milliseconds())
		}
		w.ended(rctx, log, done)
		return nil
	}

	if fail.transient && int(j.Fails)+1 < w.cfg.RetrySchedule.Attempts() {
		log.Warn("transient failure; the queue will retry", "code", fail.code, "error", fail.err)
		if err := w.store.Requeue(rctx, id); err != nil {
			log.Error("could not requeue job", "error", err)
		}
		return fail
	}
	done, ended, err := w.store.Fail(rctx, id, fail.code, fail.message)
	if err != nil {
		log.Error("could not record the failure", "error", err)
		return err
	}
	if ended {
		w.metrics.Finished(jobs.TypeThumbnail, string(jobs.StatusFailed), fail.code)
		log.Info("job failed", "code", fail.code, "reason", fail.message, "error", fail.err)
	}
	w.ended(rctx, log, done)
	return nil
}

// ended hands a finished job to the notifier for its push deliveries.
func (w *Worker) ended(ctx context.Context, log *slog.Logger, job *jobs.Job) {
	if err := w.notifier.JobEnded(ctx, job); err != nil {
		log.Error("could not queue deliveries", "error", err)
	}
}

// heartbeat marks the job alive until the returned function is called, so
// the sweeper can tell a slow job from one whose worker died.
func (w *Worker) heartbeat(id string, log *slog.Logger) (stop func()) {
	every := w.cfg.StaleAfter / 3
	if every <= 0 || every > 10*time.Second {
		every = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := w.store.Heartbeat(ctx, id); err != nil && ctx.Err() == nil {
					log.Warn("heartbeat failed", "error", err)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// run fetches the source and makes the thumbnail.
func (w *Worker) run(ctx context.Context, job *jobs.Job) (jobs.Result, []byte, *failure) {
	src, fail := w.source(ctx, job)
	if fail != nil {
		return jobs.Result{}, nil, fail
	}
	spec := thumbnail.Spec{
		Width:     job.Request.Width,
		Height:    job.Request.Height,
		Fit:       thumbnail.Fit(job.Request.Fit),
		Enlarge:   job.Request.Enlarge,
		Format:    thumbnail.Format(job.Request.Format),
		Quality:   job.Request.Quality,
		MaxPixels: w.cfg.MaxPixels,
	}
	res, err := w.makeThumbnail(ctx, src, spec)
	if err != nil {
		return jobs.Result{}, nil, pipelineFailure(err)
	}
	for stage, d := range res.Timings {
		w.metrics.Stage(stage, d)
	}
	return jobs.Result{
		Width:       res.Width,
		Height:      res.Height,
		Format:      string(res.Format),
		ContentType: res.ContentType,
		Engine:      res.Engine,
	}, res.Data, nil
}

// makeThumbnail runs the pipeline but stops waiting at the job's deadline:
// a decoder in the middle of a huge image does not look at the context, and
// the job must end with "timeout" rather than run on.
func (w *Worker) makeThumbnail(ctx context.Context, src []byte, spec thumbnail.Spec) (thumbnail.Result, error) {
	type outcome struct {
		res thumbnail.Result
		err error
	}
	ch := make(chan outcome, 1)
	go func() {
		res, err := w.engine.Make(ctx, src, spec)
		ch <- outcome{res, err}
	}()
	select {
	case o := <-ch:
		return o.res, o.err
	case <-ctx.Done():
		return thumbnail.Result{}, ctx.Err()
	}
}

func (w *Worker) source(ctx context.Context, job *jobs.Job) ([]byte, *failure) {
	if job.Request.Source == jobs.SourceUpload {
		b, err := w.store.Upload(ctx, job.ID)
		if ctx.Err() != nil {
			return nil, jobTimeout(err)
		}
		if errors.Is(err, jobs.ErrNotFound) {
			return nil, &failure{code: CodeSourceNotFound, message: "the uploaded image is no longer stored; submit it again", err: err}
		}
		if err != nil {
			return nil, &failure{code: CodeInternal, message: "the uploaded image could not be read; it will be retried", transient: true, err: err}
		}
		return b, nil
	}
	start := time.Now()
	b, err := w.fetcher.Fetch(ctx, job.Request.URL)
	w.metrics.Stage("fetch", time.Since(start))
	if err != nil {
		// The error's text is Go's `Get "<url>": ...`: the query of a
		// pre-signed URL would reach the logs. Keep scheme, host and path.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = view.MaskURL(ue.URL)
		}
		// The job's own deadline, not the download limit, ran out.
		if ctx.Err() != nil {
			return nil, jobTimeout(err)
		}
		return nil, fetchFailure(err)
	}
	return b, nil
}

func jobTimeout(err error) *failure {
	return &failure{code: CodeTimeout, message: "the job's time limit ran out while getting the source image", err: err}
}

// fetchFailure turns a download error into a code a client can act on.
func fetchFailure(err error) *failure {
	var forbidden *safehttp.ForbiddenError
	var tooLarge *safehttp.TooLargeError
	var status *safehttp.StatusError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &forbidden):
		return &failure{code: CodeSourceForbidden, message: forbidden.Error(), err: err}
	case errors.Is(err, safehttp.ErrTooManyRedirects):
		return &failure{code: CodeSourceUnreachable, message: "the source redirected too many times; give the image's final URL", err: err}
	case errors.As(err, &tooLarge):
		return &failure{code: CodeSourceTooLarge, message: tooLarge.Error(), err: err}
	case errors.As(err, &status):
		switch {
		case status.StatusCode == 404 || status.StatusCode == 410:
			return &failure{code: CodeSourceNotFound, message: fmt.Sprintf("the source answered %d: check the image URL", status.StatusCode), err: err}
		case status.StatusCode >= 500 || status.StatusCode == 429 || status.StatusCode == 408:
			return &failure{code: CodeSourceUnreachable, message: fmt.Sprintf("the source kept answering %d; try again later", status.StatusCode), transient: true, err: err}
		default:
			return &failure{code: CodeSourceUnreachable, message: fmt.Sprintf("the source answered %d instead of an image; check the URL and that it is public", status.StatusCode), err: err}
		}
	case safehttp.IsTimeout(err):
		return &failure{code: CodeSourceUnreachable, message: "the source did not send the image within the download time limit", transient: true, err: err}
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return &failure{code: CodeSourceUnreachable, message: fmt.Sprintf("the source host %q does not exist", dnsErr.Name), err: err}
	default:
		return &failure{code: CodeSourceUnreachable, message: "the source could not be reached; try again later", transient: true, err: err}
	}
}

// pipelineFailure maps a thumbnail error; the pipeline's own codes pass through.
func pipelineFailure(err error) *failure {
	var te *thumbnail.Error
	switch {
	case errors.As(err, &te):
		return &failure{code: te.Code, message: te.Message, err: err}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return &failure{code: CodeTimeout, message: "the image took longer than the job's time limit to process", err: err}
	default:
		return &failure{code: CodeInternal, message: "the thumbnail could not be made because of an internal error", err: err}
	}
}
