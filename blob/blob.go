// Package blob keeps the bytes of images, a job's upload and its outputs, behind
// one small interface with two backends: the job Redis (the default) and any
// S3-compatible object store. THUMBNAILED_STORAGE_URL chooses one (see ParseURL).
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Store holds the bytes of one job's images: its upload and its outputs, under the
// job's id. Keys inside a job are names like "upload" or "default.jpg".
type Store interface {
	// Put stores r under job/name, streaming where the backend allows; it returns
	// the number of bytes stored. expires is when the job's record expires; a
	// backend with native expiry (Redis) uses it, others rely on Delete.
	// An error from reading r comes back wrapped as it is, never as ErrUnavailable.
	Put(ctx context.Context, job, name string, r io.Reader, expires time.Time) (int64, error)
	// Get returns the bytes of job/name; ErrNotFound when absent.
	Get(ctx context.Context, job, name string) ([]byte, error)
	// Delete removes every object of job (idempotent: no error when none exist).
	Delete(ctx context.Context, job string) error
	// DeleteOne removes one object (idempotent).
	DeleteOne(ctx context.Context, job, name string) error
	// Ping checks the backend answers (for /readyz), within ctx and at most PingTimeout.
	Ping(ctx context.Context) error
	// Name describes the backend for logs, without secrets: "redis" or "s3 bucket/prefix at host".
	Name() string
	// Buffered reports whether Put holds the whole object in memory (Redis) or streams (S3).
	Buffered() bool
}

// ErrNotFound means the object (or its whole job) does not exist or has expired.
var ErrNotFound = errors.New("blob: not found")

// ErrUnavailable is wrapped by every error that means the backend cannot be reached,
// timed out, or refused for lack of space (Redis OOM): the API answers 503 for these.
var ErrUnavailable = errors.New("blob: storage unavailable")

// PingTimeout bounds Ping even when ctx allows longer.
const PingTimeout = 2 * time.Second

// Open returns the store for THUMBNAILED_STORAGE_URL: "" or "redis:" = the job Redis
// (pool and namespace given), "s3://BUCKET/PREFIX?endpoint=http://host:port&region=...&path_style=true"
// = S3 with credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and
// AWS_SESSION_TOKEN when set), read through getenv. Open does not connect.
func Open(rawURL string, getenv func(string) string, pool *redis.Pool, namespace string) (Store, error) {
	cfg, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if cfg.Backend == BackendS3 {
		if getenv == nil {
			getenv = func(string) string { return "" }
		}
		return newS3(cfg, getenv)
	}
	if pool == nil {
		return nil, errors.New("blob: the redis store needs the job Redis pool")
	}
	if namespace == "" {
		return nil, errors.New("blob: the redis store needs a namespace")
	}
	return &redisStore{pool: pool, ns: namespace}, nil
}

// checkKey refuses a job id or name that could reach outside its job: both
// become parts of an S3 key, where "/" separates folders.
func checkKey(job, name string) error {
	if err := checkPart("job id", job); err != nil {
		return err
	}
	return checkPart("name", name)
}

func checkPart(what, s string) error {
	if s == "" || s == "." || s == ".." || len(s) > 200 || strings.ContainsAny(s, "/\\") ||
		strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("blob: invalid %s %q", what, s)
	}
	return nil
}

// countingReader remembers how many bytes r gave and the first error other than
// io.EOF, so a failure of the source is told apart from a failure of the backend.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}
