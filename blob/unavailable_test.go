package blob_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/internal/testnet"
	"github.com/thumbnailed/thumbnailed/internal/tests3"
)

// A backend that is gone, or that accepts connections and never answers, makes
// every call fail with ErrUnavailable within the caller's deadline.
func TestUnreachableBackendIsUnavailableWithinTheDeadline(t *testing.T) {
	t.Parallel()
	image := big() // made before any clock starts
	stalled := testnet.StalledAddr(t)
	closed := testnet.FreeAddr(t)
	stopped := stoppedS3(t)

	stores := map[string]blob.Store{
		"redis, closed port":     openWithPool(t, closed),
		"redis, never answering": openWithPool(t, stalled),
		"s3, stopped":            stopped,
		"s3, never answering":    openS3At(t, "http://"+stalled),
	}
	const deadline = time.Second
	ops := map[string]func(context.Context, blob.Store) error{
		"put": func(ctx context.Context, s blob.Store) error {
			_, err := s.Put(ctx, "job", "default.jpg", strings.NewReader("thumb"), inAnHour)
			return err
		},
		"put 19 MB": func(ctx context.Context, s blob.Store) error { // more than a socket buffer holds
			_, err := s.Put(ctx, "job", "upload", bytes.NewReader(image), inAnHour)
			return err
		},
		"get": func(ctx context.Context, s blob.Store) error {
			_, err := s.Get(ctx, "job", "upload")
			return err
		},
		"delete":     func(ctx context.Context, s blob.Store) error { return s.Delete(ctx, "job") },
		"delete one": func(ctx context.Context, s blob.Store) error { return s.DeleteOne(ctx, "job", "upload") },
		"ping":       func(ctx context.Context, s blob.Store) error { return s.Ping(ctx) },
	}
	for _, r := range testnet.CallAll(t, deadline, stores, ops) {
		t.Run(r.Name, func(t *testing.T) {
			is := is.New(t)
			t.Logf("after %v: %v", r.Took.Round(time.Millisecond), r.Err)
			is.True(errors.Is(r.Err, blob.ErrUnavailable)) // an outage is ErrUnavailable
			is.True(r.Took < deadline+time.Second)         // and the call keeps the deadline
		})
	}
}

func openS3At(t *testing.T, endpoint string) blob.Store {
	t.Helper()
	env := map[string]string{"AWS_ACCESS_KEY_ID": "access", "AWS_SECRET_ACCESS_KEY": "secret-key"}
	return openS3(t, "s3://thumbs/p?region=us-east-1&path_style=true&endpoint="+endpoint, func(k string) string { return env[k] })
}

// stoppedS3 is a store whose versitygw worked and then stopped.
func stoppedS3(t *testing.T) blob.Store {
	t.Helper()
	srv := tests3.Start(t)
	b := srv.NewBucket(t)
	s := openS3(t, b.URL, b.Getenv)
	put(t, s, "job", "upload", []byte("stored while it ran"))
	srv.Stop()
	return s
}
