package blob_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	mathrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/internal/testredis"
	"github.com/thumbnailed/thumbnailed/internal/tests3"
)

// backend is one Store under test, with a way to look behind it.
type backend struct {
	store blob.Store
	// stored lists the names of job's objects as the backend itself holds them
	// (Redis: the hash's fields; S3: the files in versitygw's directory).
	stored   func(t *testing.T, job string) []string
	buffered bool
}

// openStore opens a Store as the service does, from its storage URL (or the
// Redis pool and namespace).
func openStore(t *testing.T, url string, getenv func(string) string, pool *redis.Pool, ns string) blob.Store {
	t.Helper()
	s, err := blob.Open(url, getenv, pool, ns)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// redisStore is a Redis store on the test's own namespace, and its Redis.
func redisStore(t *testing.T) (blob.Store, *testredis.Redis) {
	t.Helper()
	r := testredis.New(t)
	return openStore(t, "redis:", nil, r.Pool, r.Namespace), r
}

func openS3(t *testing.T, url string, getenv func(string) string) blob.Store {
	t.Helper()
	return openStore(t, url, getenv, nil, "")
}

// s3Store is an S3 store under prefix ("": none) in a fresh bucket of the
// shared versitygw, and its bucket.
func s3Store(t *testing.T, prefix string) (blob.Store, *tests3.Bucket) {
	t.Helper()
	b := tests3.Shared(t)
	return openS3(t, b.URLWithPrefix(prefix), b.Getenv), b
}

// backends makes each Store the contract is checked against.
var backends = map[string]func(t *testing.T) backend{
	"redis": func(t *testing.T) backend {
		store, r := redisStore(t)
		return backend{
			store:    store,
			buffered: true,
			stored: func(t *testing.T, job string) []string {
				conn := r.Pool.Get()
				defer conn.Close()
				names, err := redis.Strings(conn.Do("HKEYS", r.Namespace+":blob:"+job))
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(names)
				return names
			},
		}
	},
	"s3": func(t *testing.T) backend {
		const prefix = "thumbs/contract"
		store, b := s3Store(t, prefix)
		return backend{
			store: store,
			stored: func(t *testing.T, job string) []string {
				var names []string
				for _, f := range b.Files(t, prefix+"/"+job) {
					names = append(names, strings.TrimPrefix(f, prefix+"/"+job+"/"))
				}
				slices.Sort(names)
				return names
			},
		}
	},
}

// big is a 19 MB image-sized object of random bytes, made once.
var big = sync.OnceValue(func() []byte {
	b := make([]byte, 19<<20)
	_, _ = mathrand.NewChaCha8([32]byte{19}).Read(b)
	return b
})

// binary holds every byte value, a NUL run and invalid UTF-8.
func binary() []byte {
	b := make([]byte, 0, 300)
	for i := range 256 {
		b = append(b, byte(i))
	}
	return append(b, 0, 0, 0, 0xff, 0xfe, 0xc3, 0x28, '\r', '\n')
}

func newJob() string { return "job-" + strings.ToLower(rand.Text()[:12]) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var inAnHour = time.Now().Add(time.Hour)

func put(t *testing.T, s blob.Store, job, name string, data []byte) {
	t.Helper()
	putUntil(t, s, job, name, data, inAnHour)
}

// putUntil stores data as job's object name, to expire at expires.
func putUntil(t *testing.T, s blob.Store, job, name string, data []byte, expires time.Time) {
	t.Helper()
	n, err := s.Put(ctxT(t), job, name, bytes.NewReader(data), expires)
	if err != nil {
		t.Fatalf("put %s/%s: %v", job, name, err)
	}
	if n != int64(len(data)) {
		t.Fatalf("put %s/%s: stored %d bytes, want %d", job, name, n, len(data))
	}
}

// get reads job's object name, which must be there.
func get(t *testing.T, s blob.Store, job, name string) []byte {
	t.Helper()
	b, err := s.Get(ctxT(t), job, name)
	if err != nil {
		t.Fatalf("get %s/%s: %v", job, name, err)
	}
	return b
}

func mustBeNotFound(t *testing.T, s blob.Store, job, name string) {
	t.Helper()
	b, err := s.Get(ctxT(t), job, name)
	if !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("get %s/%s: got %d bytes and error %v, want ErrNotFound", job, name, len(b), err)
	}
	if errors.Is(err, blob.ErrUnavailable) {
		t.Fatalf("get %s/%s: a missing object is not an outage: %v", job, name, err)
	}
}

// TestContract checks the promises of Store the same way for every backend.
func TestContract(t *testing.T) {
	t.Parallel()
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			be := open(t)
			s := be.store
			// check checks one promise in a subtest of its own, run in parallel
			// with the others.
			check := func(name string, f func(t *testing.T, is *is.I)) {
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					f(t, is.New(t))
				})
			}

			check("round trip keeps every byte", func(t *testing.T, is *is.I) {
				job := newJob()
				objects := map[string][]byte{
					"upload":      big(),
					"default.jpg": binary(),
					"empty.png":   {},
					"small.webp":  []byte("RIFF\x00\x00\x00\x00WEBPVP8 "),
				}
				for name, data := range objects {
					put(t, s, job, name, data)
				}
				for name, want := range objects {
					is.True(bytes.Equal(get(t, s, job, name), want)) // the bytes read back are the bytes stored
				}
				is.Equal(be.stored(t, job), []string{"default.jpg", "empty.png", "small.webp", "upload"})
			})

			check("a second put replaces the first", func(t *testing.T, is *is.I) {
				job := newJob()
				put(t, s, job, "default.jpg", []byte("first, longer than the second"))
				put(t, s, job, "default.jpg", []byte("second"))
				is.Equal(string(get(t, s, job, "default.jpg")), "second")
			})

			check("a missing name or job is ErrNotFound", func(t *testing.T, _ *is.I) {
				job := newJob()
				put(t, s, job, "upload", []byte("x"))
				mustBeNotFound(t, s, job, "default.jpg") // the job exists, the name does not
				mustBeNotFound(t, s, newJob(), "upload") // no such job at all
			})

			check("Delete removes every object of the job and nothing else", func(t *testing.T, is *is.I) {
				job, other := newJob(), newJob()
				longer := job + "0" // shares job as a prefix: its objects must stay
				for _, name := range []string{"upload", "default.jpg", "small.webp"} {
					put(t, s, job, name, []byte(name))
				}
				put(t, s, other, "upload", []byte("other"))
				put(t, s, longer, "upload", []byte("longer"))

				is.NoErr(s.Delete(ctxT(t), job))

				for _, name := range []string{"upload", "default.jpg", "small.webp"} {
					mustBeNotFound(t, s, job, name)
				}
				is.Equal(len(be.stored(t, job)), 0) // nothing of the job is left in the backend
				for j, want := range map[string]string{other: "other", longer: "longer"} {
					is.Equal(string(get(t, s, j, "upload")), want) // other jobs are untouched
					is.Equal(be.stored(t, j), []string{"upload"})
				}
			})

			check("Delete is idempotent", func(t *testing.T, is *is.I) {
				job := newJob()
				is.NoErr(s.Delete(ctxT(t), job)) // never existed
				put(t, s, job, "upload", []byte("x"))
				is.NoErr(s.Delete(ctxT(t), job))
				is.NoErr(s.Delete(ctxT(t), job)) // already gone
				mustBeNotFound(t, s, job, "upload")
			})

			check("DeleteOne removes one object and is idempotent", func(t *testing.T, is *is.I) {
				job := newJob()
				put(t, s, job, "upload", []byte("original"))
				put(t, s, job, "default.jpg", []byte("thumb"))

				is.NoErr(s.DeleteOne(ctxT(t), job, "upload"))
				mustBeNotFound(t, s, job, "upload")
				is.Equal(string(get(t, s, job, "default.jpg")), "thumb")
				is.Equal(be.stored(t, job), []string{"default.jpg"})

				is.NoErr(s.DeleteOne(ctxT(t), job, "upload"))      // already gone
				is.NoErr(s.DeleteOne(ctxT(t), newJob(), "upload")) // no such job
				is.NoErr(s.DeleteOne(ctxT(t), job, "default.jpg")) // the last one
				is.Equal(len(be.stored(t, job)), 0)
			})

			check("a failing source is the source's error, and nothing is stored", func(t *testing.T, is *is.I) {
				for _, size := range []int{1000, 7 << 20} { // one PUT; a streamed upload cut after its first part
					job := newJob()
					src := io.MultiReader(bytes.NewReader(big()[:size]), failingReader{})
					n, err := s.Put(ctxT(t), job, "upload", src, inAnHour)
					is.True(errors.Is(err, errSourceBroke))       // the cause is kept for the caller
					is.True(!errors.Is(err, blob.ErrUnavailable)) // a broken upload is not an outage
					is.Equal(n, int64(0))                         // nothing counted as stored
					mustBeNotFound(t, s, job, "upload")           // nothing half-stored
					is.Equal(len(be.stored(t, job)), 0)           // not even an unfinished upload's file
				}
			})

			check("keys that could leave their job are refused", func(t *testing.T, is *is.I) {
				job := newJob()
				for _, k := range [][2]string{{"../" + job, "upload"}, {job, "a/b"}, {"", "upload"}, {job, ""}, {job, ".."}, {job, "x\ny"}} {
					_, err := s.Put(ctxT(t), k[0], k[1], strings.NewReader("x"), inAnHour)
					is.True(err != nil) // put refused
					_, err = s.Get(ctxT(t), k[0], k[1])
					is.True(err != nil && !errors.Is(err, blob.ErrNotFound)) // an invalid key is not a missing object
				}
				is.True(s.Delete(ctxT(t), "a/b") != nil)
				is.True(s.Delete(ctxT(t), "") != nil)
			})

			check("a caller that gave up (context.Canceled) is not an outage", func(t *testing.T, is *is.I) {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				_, err := s.Get(ctx, newJob(), "upload")
				is.True(err != nil)
				is.True(errors.Is(err, context.Canceled))
				is.True(!errors.Is(err, blob.ErrUnavailable))
			})

			check("Ping answers", func(t *testing.T, is *is.I) {
				is.NoErr(s.Ping(ctxT(t)))
			})

			check("Buffered tells whether Put holds the object", func(t *testing.T, is *is.I) {
				is.Equal(s.Buffered(), be.buffered)
			})
		})
	}
}

var errSourceBroke = errors.New("the client hung up")

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errSourceBroke }
