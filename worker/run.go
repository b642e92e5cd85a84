package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/thumbnail"
	"github.com/thumbnailed/thumbnailed/view"
)

// Fetcher downloads a source image (safehttp.Client in production), into
// buf (nil: a new buffer), and returns it.
type Fetcher interface {
	FetchInto(ctx context.Context, rawURL string, buf []byte) ([]byte, error)
}

// keepSourceBuffer is the largest source buffer kept for the next job: a
// download into memory already mapped costs no page faults (a fresh 2 MB
// buffer per job was a measurable part of a thumbnail's time, BENCHMARKS.md
// "Speed, round two"). One per job slot at most, so idle memory stays within
// Concurrency x this.
const keepSourceBuffer = 8 << 20

// sourceBuffers are the buffers kept for the next downloads.
type sourceBuffers chan []byte

func (b sourceBuffers) get() []byte {
	select {
	case buf := <-b:
		return buf
	default:
		return nil
	}
}

// put keeps buf for a next download, unless it is too large or enough are kept.
func (b sourceBuffers) put(buf []byte) {
	if cap(buf) == 0 || cap(buf) > keepSourceBuffer {
		return
	}
	select {
	case b <- buf[:0]:
	default:
	}
}

// Blobs is where a job's upload and images live (blob.Store).
type Blobs interface {
	Put(ctx context.Context, job, name string, r io.Reader, expires time.Time) (int64, error)
	Get(ctx context.Context, job, name string) ([]byte, error)
	DeleteOne(ctx context.Context, job, name string) error
	Delete(ctx context.Context, job string) error
}

// failure is why a run did not make its images: a code and message for the
// client, and whether trying again later could help.
type failure struct {
	code      string
	message   string
	transient bool
	err       error
}

func (f *failure) Error() string { return f.code + ": " + f.message }
func (f *failure) Unwrap() error { return f.err }

// Run makes the images of job id and records how it went. It returns an
// error only when the outcome could not be recorded (Redis trouble): then
// the run should be tried again.
func (w *Worker) Run(ctx context.Context, id string) error {
	log := w.log.With("job_id", id)
	// The whole run, fetch and pipeline included, has the job's deadline.
	ctx, cancel := context.WithTimeout(ctx, w.cfg.JobTimeout)
	defer cancel()

	job, begin, err := w.store.Begin(ctx, id, maxCrashes)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		log.Info("job expired or erased before it ran; dropping it")
		return nil
	case err != nil:
		log.Error("could not start job", "error", err)
		return err
	case begin == jobs.Skip:
		log.Info("job already ended or running elsewhere; skipping this run", "status", job.Status)
		return nil
	case begin == jobs.Crashed:
		w.metrics.Finished(TypeThumbnail, string(jobs.StatusFailed), codes.WorkerCrashed)
		log.Error("job failed: its runs kept crashing the worker", "crashes", job.Crashes)
		return nil
	}
	log = log.With("attempt", job.Attempts)
	if job.KeyName != "" {
		log = log.With("key_name", job.KeyName)
	}
	log.Info("job started")
	release := w.leases.hold(jobs.KindThumbnail, id)
	defer release()

	start := time.Now()
	result, images, fail := w.make(ctx, job)
	w.metrics.Stage("total", time.Since(start))

	// The run's context may be spent; recording the outcome gets its own.
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	if fail == nil {
		return w.succeed(rctx, log, job, result, images)
	}
	if fail.transient && job.Retries+1 < w.cfg.RetrySchedule.Attempts() {
		delay, _ := w.cfg.RetrySchedule.Delay(job.Retries + 1)
		_, err := w.store.Retry(rctx, id, delay)
		if errors.Is(err, jobs.ErrNotFound) {
			log.Info("job erased while it ran")
			w.dropImages(rctx, log, id)
			return nil
		}
		if err != nil {
			log.Error("could not schedule the retry", "error", err)
			return err
		}
		log.Warn("transient failure; will retry", "code", fail.code, "error", fail.err, "retry_in", delay.String())
		return nil
	}
	direct := w.takeDirect(job)
	done, ended, err := w.store.Fail(rctx, id, fail.code, fail.message, direct...)
	if err != nil {
		return w.notRecorded(rctx, log, id, direct, err, "job erased while it ran", "could not record the failure")
	}
	if ended {
		w.metrics.Finished(TypeThumbnail, string(jobs.StatusFailed), fail.code)
		log.Info("job failed", "code", fail.code, "reason", fail.message, "error", fail.err)
	}
	w.deliverDirect(log, done, ended, direct, nil)
	w.dropUpload(rctx, log, job)
	return nil
}

func (w *Worker) succeed(ctx context.Context, log *slog.Logger, job *jobs.Job, result jobs.Result, images map[string][]byte) error {
	direct := w.takeDirect(job)
	done, ended, err := w.store.Succeed(ctx, job.ID, result, direct...)
	if err != nil {
		return w.notRecorded(ctx, log, job.ID, direct, err, "job erased while it ran; its images are deleted", "could not record the result")
	}
	if ended {
		w.metrics.Finished(TypeThumbnail, string(jobs.StatusSucceeded), "")
		first := result.Outputs[0]
		log.Info("job succeeded", "outputs", len(result.Outputs), "width", first.Width, "height", first.Height,
			"bytes", first.Bytes, "duration_ms", time.Since(*done.StartedAt).Milliseconds())
	}
	w.deliverDirect(log, done, ended, direct, images)
	w.dropUpload(ctx, log, job)
	return nil
}

// notRecorded handles a job's end that was not written (err from Succeed or
// Fail): the direct attempt it would have claimed is given back, and a job
// erased while it ran has its images deleted; any other error goes back to
// the queue.
func (w *Worker) notRecorded(ctx context.Context, log *slog.Logger, id string, direct []string, err error, erased, failed string) error {
	w.releaseDirect(direct)
	if errors.Is(err, jobs.ErrNotFound) {
		log.Info(erased)
		w.dropImages(ctx, log, id)
		return nil
	}
	log.Error(failed, "error", err)
	return err
}

// takeDirect decides whether this worker makes the first attempt of the
// job's callback itself as the job ends (see directChannel): when the job
// has one and fewer than Concurrency such attempts are running here. It
// returns the channels to claim in the transaction that ends the job.
func (w *Worker) takeDirect(job *jobs.Job) []string {
	if job.Delivery(directChannel) == nil {
		return nil
	}
	select {
	case w.direct <- struct{}{}:
		return []string{directChannel}
	default:
		return nil // busy: the queue takes it
	}
}

func (w *Worker) releaseDirect(direct []string) {
	if len(direct) > 0 {
		<-w.direct
	}
}

// deliverDirect makes the first attempt that ending the job claimed for this
// worker, in the background: the job slot goes on to the next job. The
// attempt's lease is kept alive while it runs; if this process dies first,
// the lease runs out and the sweeper records the attempt as interrupted and
// schedules the next one. An attempt that failed for good goes to the dead
// set, as a queued one does.
func (w *Worker) deliverDirect(log *slog.Logger, job *jobs.Job, ended bool, direct []string, images map[string][]byte) {
	if len(direct) == 0 {
		return
	}
	if !ended || job.Delivery(directChannel) == nil {
		w.releaseDirect(direct) // nothing was claimed
		return
	}
	release := w.leases.hold(directChannel, job.ID)
	w.directs.Go(func() {
		defer w.releaseDirect(direct)
		defer release()
		ctx := context.Background()
		err := w.deliverer.DeliverFirst(ctx, directChannel, job, images)
		if errors.Is(err, jobs.ErrDeliveryFailed) {
			w.sweeper.bury(ctx, log, jobs.Lease{Kind: directChannel, JobID: job.ID}, err)
		}
	})
}

// dropUpload deletes an ended job's upload; one left behind by a crash goes
// when the job expires.
func (w *Worker) dropUpload(ctx context.Context, log *slog.Logger, job *jobs.Job) {
	if job.Request.Source != jobs.SourceUpload {
		return
	}
	if err := w.blobs.DeleteOne(ctx, job.ID, jobs.UploadBlob); err != nil {
		log.Warn("could not delete the upload; it goes when the job expires", "error", err)
	}
}

func (w *Worker) dropImages(ctx context.Context, log *slog.Logger, id string) {
	if err := w.blobs.Delete(ctx, id); err != nil {
		log.Warn("could not delete an erased job's images; they go at its expiry", "error", err)
	}
}

// make fetches the source, makes every output from one decode, and stores
// them. It returns their bytes too, by output name, for the first delivery.
func (w *Worker) make(ctx context.Context, job *jobs.Job) (jobs.Result, map[string][]byte, *failure) {
	src, fail := w.source(ctx, job)
	if fail != nil {
		return jobs.Result{}, nil, fail
	}
	outputs := make([]thumbnail.Output, len(job.Request.Outputs))
	for i, o := range job.Request.Outputs {
		outputs[i] = thumbnail.Output{Name: o.Name, Width: o.Width, Height: o.Height, Fit: thumbnail.Fit(o.Fit),
			Enlarge: o.Enlarge, Gravity: thumbnail.Gravity(o.Gravity), Format: thumbnail.Format(o.Format), Quality: o.Quality}
		if o.Focal != nil {
			outputs[i].Focal = &thumbnail.Point{X: o.Focal.X, Y: o.Focal.Y}
		}
	}
	set, err := w.makeSet(ctx, src, outputs)
	if err != nil {
		return jobs.Result{}, nil, pipelineFailure(err)
	}
	for stage, d := range set.Timings {
		w.metrics.Stage(stage, d)
	}
	w.metrics.Outputs(len(set.Outputs))
	result := jobs.Result{Engine: set.Engine,
		Placeholder: &jobs.Placeholder{BlurHash: set.Placeholder.BlurHash, DominantColor: set.Placeholder.DominantColor}}
	// The record will expire the TTL after the job ends, about now.
	expires := time.Now().Add(w.cfg.ResultTTL + jobs.BlobMargin)
	images := make(map[string][]byte, len(set.Outputs))
	for _, out := range set.Outputs {
		w.metrics.Encode(string(out.Format), out.EncodeTime)
		name := jobs.BlobName(out.Name, string(out.Format))
		if _, err := w.blobs.Put(ctx, job.ID, name, bytes.NewReader(out.Data), expires); err != nil {
			return jobs.Result{}, nil, storeFailure(ctx, err)
		}
		images[out.Name] = out.Data
		sum := sha256.Sum256(out.Data)
		result.Outputs = append(result.Outputs, jobs.OutputResult{
			Name:        out.Name,
			Width:       out.Width,
			Height:      out.Height,
			Format:      string(out.Format),
			ContentType: out.ContentType,
			Bytes:       len(out.Data),
			ETag:        hex.EncodeToString(sum[:16]),
		})
	}
	return result, images, nil
}

// makeSet runs the pipeline but stops waiting at the job's deadline: a
// decoder in the middle of a huge image does not look at the context, and
// the job must end with "timeout" rather than run on. src goes back to the
// source buffers once the engine is done with it, not before.
func (w *Worker) makeSet(ctx context.Context, src []byte, outputs []thumbnail.Output) (thumbnail.Set, error) {
	type outcome struct {
		set thumbnail.Set
		err error
	}
	ch := make(chan outcome, 1)
	go func() {
		set, err := w.engine.MakeSet(ctx, src, outputs, w.cfg.MaxPixels)
		w.buffers.put(src)
		ch <- outcome{set, err}
	}()
	select {
	case o := <-ch:
		return o.set, o.err
	case <-ctx.Done():
		return thumbnail.Set{}, ctx.Err()
	}
}

func (w *Worker) source(ctx context.Context, job *jobs.Job) ([]byte, *failure) {
	if job.Request.Source == jobs.SourceUpload {
		b, err := w.blobs.Get(ctx, job.ID, jobs.UploadBlob)
		switch {
		case ctx.Err() != nil:
			return nil, jobTimeout(err)
		case errors.Is(err, blob.ErrNotFound):
			return nil, &failure{code: codes.SourceNotFound, message: "the uploaded image is no longer stored; submit it again", err: err}
		case err != nil:
			return nil, &failure{code: codes.Internal, message: "the uploaded image could not be read; it will be retried", transient: true, err: err}
		}
		return b, nil
	}
	start := time.Now()
	buf := w.buffers.get()
	b, err := w.fetcher.FetchInto(ctx, job.Request.URL, buf)
	w.metrics.Stage("fetch", time.Since(start))
	if err != nil {
		w.buffers.put(buf)
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

func storeFailure(ctx context.Context, err error) *failure {
	if ctx.Err() != nil {
		return &failure{code: codes.Timeout, message: "the job's time limit ran out while storing the images", err: err}
	}
	return &failure{code: codes.Internal, message: "the images could not be stored; it will be retried", transient: true, err: err}
}

func jobTimeout(err error) *failure {
	return &failure{code: codes.Timeout, message: "the job's time limit ran out while getting the source image", err: err}
}

// fetchFailure turns a download error into a code a client can act on.
func fetchFailure(err error) *failure {
	var forbidden *safehttp.ForbiddenError
	var tooLarge *safehttp.TooLargeError
	var status *safehttp.StatusError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &forbidden):
		return &failure{code: codes.SourceForbidden, message: forbidden.Error(), err: err}
	case errors.Is(err, safehttp.ErrTooManyRedirects):
		return &failure{code: codes.SourceUnreachable, message: "the source redirected too many times; give the image's final URL", err: err}
	case errors.As(err, &tooLarge):
		return &failure{code: codes.SourceTooLarge, message: tooLarge.Error(), err: err}
	case errors.As(err, &status):
		switch {
		case status.StatusCode == 404 || status.StatusCode == 410:
			return &failure{code: codes.SourceNotFound, message: fmt.Sprintf("the source answered %d: check the image URL", status.StatusCode), err: err}
		case status.StatusCode >= 500 || status.StatusCode == 429 || status.StatusCode == 408:
			return &failure{code: codes.SourceUnreachable, message: fmt.Sprintf("the source kept answering %d; try again later", status.StatusCode), transient: true, err: err}
		default:
			return &failure{code: codes.SourceUnreachable, message: fmt.Sprintf("the source answered %d instead of an image; check the URL and that it is public", status.StatusCode), err: err}
		}
	case safehttp.IsTimeout(err):
		return &failure{code: codes.SourceUnreachable, message: "the source did not send the image within the download time limit", transient: true, err: err}
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return &failure{code: codes.SourceUnreachable, message: fmt.Sprintf("the source host %q does not exist", dnsErr.Name), err: err}
	default:
		return &failure{code: codes.SourceUnreachable, message: "the source could not be reached; try again later", transient: true, err: err}
	}
}

// pipelineFailure maps a thumbnail error; the pipeline's own codes pass through.
func pipelineFailure(err error) *failure {
	var te *thumbnail.Error
	switch {
	case errors.As(err, &te):
		return &failure{code: te.Code, message: te.Message, err: err}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return &failure{code: codes.Timeout, message: "the image took longer than the job's time limit to process", err: err}
	default:
		return &failure{code: codes.Internal, message: "the thumbnail could not be made because of an internal error", err: err}
	}
}
