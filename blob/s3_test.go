package blob_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/internal/tests3"
)

// Object keys are {prefix}/{job}/{name}, or {job}/{name} without a prefix: each
// a file at that path in versitygw's bucket folder.
func TestS3KeysAreJobSlashName(t *testing.T) {
	t.Parallel()
	for prefix, want := range map[string]string{"": "JOB/default.jpg", "tenant/thumbs": "tenant/thumbs/JOB/default.jpg"} {
		is := is.New(t)
		s, b := s3Store(t, prefix)
		job := newJob()
		put(t, s, job, "default.jpg", []byte("thumb"))

		path := strings.ReplaceAll(want, "JOB", job)
		got, err := os.ReadFile(filepath.Join(b.Dir(), filepath.FromSlash(path)))
		is.NoErr(err) // the object is the file at {prefix}/{job}/{name}
		is.Equal(string(got), "thumb")
		is.NoErr(s.Delete(ctxT(t), job))
		_, err = os.Stat(filepath.Join(b.Dir(), filepath.FromSlash(path)))
		is.True(errors.Is(err, os.ErrNotExist)) // and Delete removed the file
	}
}

// A streamed upload that fails is aborted: no unfinished multipart upload is
// left to hold space in the bucket.
func TestS3FailedStreamLeavesNoUnfinishedUpload(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s, b := s3Store(t, "aborted")
	job := newJob()
	src := io.MultiReader(bytes.NewReader(big()[:12<<20]), failingReader{}) // fails in its third part
	_, err := s.Put(ctxT(t), job, "upload", src, inAnHour)
	is.True(errors.Is(err, errSourceBroke))

	var unfinished []string
	for u := range b.Server.Client(t).ListIncompleteUploads(ctxT(t), b.Name, "aborted/", true) {
		is.NoErr(u.Err)
		unfinished = append(unfinished, u.Key)
	}
	is.Equal(len(unfinished), 0) // the multipart upload was aborted
}

// A streamed Put holds about one 5 MiB part in memory, whatever the object's
// size. Measured here for a 19 MiB reader of unknown length (go1.26, no -race,
// repeatable to 0.1 MiB): TotalAlloc grows by 10.5 MiB during the Put and
// HeapInuse, sampled every millisecond, peaks 9.1 MiB above its level before
// the Put (with -race: 14.6 and 11.0 MiB). A memory profile splits the 10.5
// MiB into the 5 MiB part buffer, ~2.5 MiB of growing the ≤1 MiB read-ahead
// and ~2 MiB of minio-go's chunk signing over http; what Put keeps referenced
// at once is the part and the read-ahead, the rest of the peak is garbage not
// yet collected. minio-go's default part size for an unknown length would
// allocate ~550 MB instead, and reading the object whole at least 19 MiB.
//
// Not parallel: it measures the whole process.
func TestS3PutStreamsInOnePartOfMemory(t *testing.T) {
	is := is.New(t)
	s, _ := s3Store(t, "")
	const size = 19 << 20
	source := func(size int64) io.Reader { return io.LimitReader(mathrand.NewChaCha8([32]byte{7}), size) }

	// Warm up with a streamed upload of two parts: connections, the bucket's
	// region and minio-go's first-use state are not part of what a Put holds.
	_, err := s.Put(ctxT(t), newJob(), "upload", source(6<<20), inAnHour)
	is.NoErr(err)

	job := newJob()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	peak := make(chan uint64)
	stop := make(chan struct{})
	go func() { // samples the live heap while Put runs
		var m runtime.MemStats
		var high uint64
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				peak <- high
				return
			case <-tick.C:
				runtime.ReadMemStats(&m)
				high = max(high, m.HeapInuse)
			}
		}
	}()
	n, err := s.Put(ctxT(t), job, "upload", source(size), inAnHour)
	close(stop)
	high := <-peak
	runtime.ReadMemStats(&after)
	is.NoErr(err)
	is.Equal(n, int64(size))

	allocated := after.TotalAlloc - before.TotalAlloc
	held := int64(high) - int64(before.HeapInuse)
	t.Logf("a streamed Put of %d MiB allocated %.1f MiB in all; the live heap peaked %.1f MiB above its start",
		size>>20, float64(allocated)/(1<<20), float64(held)/(1<<20))
	is.True(allocated < 16<<20) // less than the object: never held whole, nor in minio-go's default ~550 MB part
	is.True(held < 16<<20)      // about one part and the read-ahead

	got := get(t, s, job, "upload")
	want := sha256.New()
	_, _ = io.Copy(want, source(size))
	is.Equal(sha256.Sum256(got), [32]byte(want.Sum(nil))) // and every byte arrived
}

// A store that refuses our credentials is misconfigured, not unavailable, and
// its errors, like the store's name, never carry the secret.
func TestS3WrongCredentialsAreNotAnOutageAndStaySecret(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	b := tests3.Shared(t)
	const secret = "wr0ng-secret-do-not-log"
	s := openS3(t, b.URLWithPrefix("p"), func(k string) string {
		return map[string]string{"AWS_ACCESS_KEY_ID": b.Server.AccessKey, "AWS_SECRET_ACCESS_KEY": secret}[k]
	})
	_, putErr := s.Put(ctxT(t), newJob(), "upload", strings.NewReader("x"), inAnHour)
	_, getErr := s.Get(ctxT(t), newJob(), "upload")
	pingErr := s.Ping(ctxT(t))
	for _, err := range []error{putErr, getErr, pingErr} {
		is.True(err != nil)
		is.True(!errors.Is(err, blob.ErrUnavailable)) // fix the configuration; retrying will not help
		is.True(!errors.Is(err, blob.ErrNotFound))
		is.True(!strings.Contains(err.Error(), secret))
	}
	is.True(!strings.Contains(s.Name(), secret))
	is.True(!strings.Contains(s.Name(), b.Server.AccessKey))
	is.Equal(s.Name(), "s3 "+b.Name+"/p at "+b.Server.Addr)
}

// Ping fails, naming the bucket, when the bucket does not exist.
func TestS3PingNamesAMissingBucket(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	b := tests3.Shared(t)
	s := openS3(t, strings.Replace(b.URL, b.Name, "no-such-bucket", 1), b.Getenv)
	err := s.Ping(ctxT(t))
	is.True(err != nil)
	is.True(strings.Contains(err.Error(), `"no-such-bucket"`))
	is.True(!errors.Is(err, blob.ErrUnavailable))
}

// Open needs both credentials for an s3:// URL and names what is missing.
func TestOpenS3NeedsCredentials(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{
		{},
		{"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE"},
		{"AWS_SECRET_ACCESS_KEY": "s3cr3t-value"},
	} {
		is := is.New(t)
		_, err := blob.Open("s3://thumbs?endpoint=http://127.0.0.1:9000", func(k string) string { return env[k] }, nil, "")
		is.True(err != nil)
		is.True(strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID"))
		is.True(strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY"))
		is.True(strings.Contains(err.Error(), "THUMBNAILED_STORAGE_URL"))
		is.True(!strings.Contains(err.Error(), "s3cr3t-value"))
	}
	_, err := blob.Open("s3://thumbs?endpoint=http://127.0.0.1:9000", nil, nil, "")
	is.New(t).True(err != nil) // no getenv at all: no credentials
}
