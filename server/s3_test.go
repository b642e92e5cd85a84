package server

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/tests3"
	"github.com/thumbnailed/thumbnailed/jobs"
)

func TestUploadStreamedToS3(t *testing.T) {
	// With an S3 store (a real versitygw) an upload is sniffed from its
	// first bytes, streamed to the bucket as {job id}/upload, and the job
	// made; what is refused at submit is never stored; a repeated submit's
	// upload is deleted. The API holds the header window and one part, not
	// the upload (the budget below would refuse a buffered 700 KB upload).
	is := is.New(t)
	bucket := tests3.New(t)
	store, err := blob.Open(bucket.URL, bucket.Getenv, nil, "unused")
	is.NoErr(err)
	is.True(!store.Buffered())
	api := newAPIWith(t, apiOptions{blobs: store, cfg: Config{MaxUploadBytes: 4 << 20, MaxInflightUploadBytes: streamHold}})

	img, err := os.ReadFile("../cmd/thumbnailed/testdata/Storm.jpg") // 695 KB: more than the header window
	is.NoErr(err)
	is.True(len(img) > headerWindow)
	h := header("Idempotency-Key", "s3-1")
	r := api.Upload(t, img, map[string]string{"width": "64"}, h)
	is.Equal(r.Status, http.StatusAccepted)
	job := r.Job(t)
	is.Equal(job.Request.Source, "upload")
	got, status := api.Get(t, job.ID)
	is.Equal(status, http.StatusOK)
	is.Equal(got.Status, "queued")
	is.Equal(api.queued(t), []string{"thumbnail " + job.ID + " 0"}) // its run is queued

	is.Equal(bucket.Files(t, ""), []string{job.ID + "/" + jobs.UploadBlob})
	stored, err := os.ReadFile(filepath.Join(bucket.Dir(), job.ID, jobs.UploadBlob))
	is.NoErr(err)
	is.True(bytes.Equal(stored, img)) // stored whole, byte for byte
	is.Equal(api.uploads.held.Load(), int64(0))

	// Sniffed: what is no image, or too large to decode, is refused before
	// anything is stored.
	r = api.Upload(t, readTestdata(t, "hostile/misc/corkami-html-document.jpg"), map[string]string{"width": "64"}, nil)
	is.Equal(r.Status, http.StatusUnsupportedMediaType)
	r = api.Upload(t, readTestdata(t, "hostile/bomb/fuzzdb-lottapixel.jpg"), map[string]string{"width": "64"}, nil)
	is.Equal(r.Status, http.StatusUnprocessableEntity)
	is.Equal(r.Problem(t).Code, "too_many_pixels")

	// The same key again: the first job, and the repeat's bytes go.
	r = api.Upload(t, img, map[string]string{"width": "64"}, h)
	is.Equal(r.Status, http.StatusOK)
	is.Equal(r.Job(t).ID, job.ID)
	only := []string{job.ID + "/" + jobs.UploadBlob}
	is.True(testapi.Eventually(10*time.Second, func() bool { return slices.Equal(bucket.Files(t, ""), only) }))
	is.Equal(len(api.redisKeys(t, "record:*")), 1)

	// Over the upload limit while streaming: 413, and nothing kept.
	r = api.Upload(t, bytes.Repeat(img, 7), map[string]string{"width": "64"}, nil) // 4.9 MB
	is.Equal(r.Status, http.StatusRequestEntityTooLarge)
	is.True(testapi.Eventually(10*time.Second, func() bool { return slices.Equal(bucket.Files(t, ""), only) }))
	is.True(testapi.Eventually(5*time.Second, func() bool { return api.uploads.held.Load() == 0 }))
}
