package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

const (
	// partSize is the part of a streamed upload held in memory at once: the S3
	// minimum. Left at 0, minio-go sizes the parts of an upload of unknown length
	// for the largest object S3 allows and allocates ~550 MB per Put.
	partSize = 5 << 20
	// singlePutMax is the largest object sent in one PUT. Put reads up to this
	// much first; a smaller object (every thumbnail, most uploads) goes in one
	// request instead of the three of a multipart upload, holds only its own size
	// and never leaves an unfinished multipart upload behind. A larger one streams
	// in parts of partSize.
	singlePutMax = 1 << 20
	// s3MaxRetries bounds minio-go's retries of a failed request (its default is
	// 10, about 6 s against a refused port when ctx has no deadline).
	s3MaxRetries = 3
	// maxPrealloc caps the buffer Get sizes from the object's length up front.
	maxPrealloc = 64 << 20
)

// s3Store keeps the objects of a job under {prefix}/{job}/{name} (job/name
// with no prefix) in one bucket of any S3-compatible store.
//
// Memory per streamed Put, measured by TestS3PutStreamsInOnePartOfMemory for a
// 19 MiB reader of unknown length: 10.5 MiB allocated in all (TotalAlloc delta:
// the 5 MiB part, growing the ≤1 MiB read-ahead, minio-go's chunk signing) and
// a HeapInuse peak 9.1 MiB above the start, uncollected garbage included; what
// Put keeps referenced at once is the part and the read-ahead. It does not grow
// with the object's size.
type s3Store struct {
	client *minio.Client
	cfg    Config
}

func newS3(cfg Config, getenv func(string) string) (*s3Store, error) {
	access, secret := getenv(EnvAccessKey), getenv(EnvSecretKey)
	var missing []string
	if access == "" {
		missing = append(missing, EnvAccessKey)
	}
	if secret == "" {
		missing = append(missing, EnvSecretKey)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s is an s3:// URL: set %s and %s (missing: %s)",
			EnvURL, EnvAccessKey, EnvSecretKey, strings.Join(missing, ", "))
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(access, secret, getenv(EnvSessionToken)),
		Secure:       cfg.Secure,
		Region:       cfg.Region,
		BucketLookup: lookup,
		MaxRetries:   s3MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: endpoint %s: %w", EnvURL, cfg.Endpoint, err)
	}
	return &s3Store{client: client, cfg: cfg}, nil
}

func (s *s3Store) Name() string   { return s.cfg.String() }
func (s *s3Store) Buffered() bool { return false }

func (s *s3Store) jobPrefix(job string) string {
	if s.cfg.Prefix == "" {
		return job + "/"
	}
	return s.cfg.Prefix + "/" + job + "/"
}

func (s *s3Store) key(job, name string) string { return s.jobPrefix(job) + name }

func (s *s3Store) Put(ctx context.Context, job, name string, r io.Reader, _ time.Time) (int64, error) {
	if err := checkKey(job, name); err != nil {
		return 0, err
	}
	src := &countingReader{r: r}
	head, err := io.ReadAll(io.LimitReader(src, singlePutMax+1))
	if err != nil {
		return 0, fmt.Errorf("blob: put %s/%s: read: %w", job, name, err)
	}
	opts := minio.PutObjectOptions{PartSize: partSize}
	if len(head) <= singlePutMax {
		_, err = s.client.PutObject(ctx, s.cfg.Bucket, s.key(job, name), bytes.NewReader(head), int64(len(head)), opts)
	} else {
		body := io.MultiReader(bytes.NewReader(head), src) // lets go of head once read
		_, err = s.client.PutObject(ctx, s.cfg.Bucket, s.key(job, name), body, -1, opts)
	}
	if src.err != nil {
		// The source failed (a client's upload cut short or too large): not the store.
		return 0, fmt.Errorf("blob: put %s/%s: read: %w", job, name, src.err)
	}
	if err != nil {
		return 0, s.fail("put "+job+"/"+name, err)
	}
	return src.n, nil
}

func (s *s3Store) Get(ctx context.Context, job, name string) ([]byte, error) {
	if err := checkKey(job, name); err != nil {
		return nil, err
	}
	op := "get " + job + "/" + name
	// Core's GetObject is one GET that answers the object's size with its body
	// (Client's would add a HEAD for the size).
	body, info, _, err := minio.Core{Client: s.client}.GetObject(ctx, s.cfg.Bucket, s.key(job, name), minio.GetObjectOptions{})
	if err != nil {
		if isNoSuchKey(err) {
			return nil, fmt.Errorf("%w: %s/%s", ErrNotFound, job, name)
		}
		return nil, s.fail(op, err)
	}
	defer body.Close()
	buf := bytes.NewBuffer(make([]byte, 0, min(max(info.Size, 0), maxPrealloc)+bytes.MinRead))
	if _, err := buf.ReadFrom(body); err != nil {
		return nil, s.fail(op, err)
	}
	return buf.Bytes(), nil
}

func (s *s3Store) Delete(ctx context.Context, job string) error {
	if err := checkPart("job id", job); err != nil {
		return err
	}
	op := "delete " + job
	ctx, cancel := context.WithCancel(ctx) // stops the lister if we return early
	defer cancel()
	var objects []minio.ObjectInfo
	for obj := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.jobPrefix(job), Recursive: true}) {
		if obj.Err != nil {
			return s.fail(op, obj.Err)
		}
		objects = append(objects, obj)
	}
	if len(objects) == 0 {
		return nil
	}
	queue := make(chan minio.ObjectInfo, len(objects))
	for _, obj := range objects {
		queue <- obj
	}
	close(queue)
	var errs []error
	for e := range s.client.RemoveObjects(ctx, s.cfg.Bucket, queue, minio.RemoveObjectsOptions{}) {
		if e.Err != nil && !isNoSuchKey(e.Err) {
			errs = append(errs, fmt.Errorf("%s: %w", e.ObjectName, e.Err))
		}
	}
	if len(errs) > 0 {
		return s.fail(op, errors.Join(errs...))
	}
	return nil
}

func (s *s3Store) DeleteOne(ctx context.Context, job, name string) error {
	if err := checkKey(job, name); err != nil {
		return err
	}
	err := s.client.RemoveObject(ctx, s.cfg.Bucket, s.key(job, name), minio.RemoveObjectOptions{})
	if err != nil && !isNoSuchKey(err) {
		return s.fail("delete "+job+"/"+name, err)
	}
	return nil
}

func (s *s3Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, PingTimeout)
	defer cancel()
	ok, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return s.fail("ping", err)
	}
	if !ok {
		return fmt.Errorf("blob: s3 bucket %q does not exist at %s", s.cfg.Bucket, s.cfg.Endpoint)
	}
	return nil
}

// fail wraps err from the store, with ErrUnavailable when it means the store
// cannot serve us now.
func (s *s3Store) fail(op string, err error) error {
	if s3Unavailable(err) {
		return fmt.Errorf("%w: s3 %s: %w", ErrUnavailable, op, err)
	}
	return fmt.Errorf("blob: s3 %s: %w", op, err)
}

func isNoSuchKey(err error) bool {
	var resp minio.ErrorResponse
	return errors.As(err, &resp) && resp.Code == minio.NoSuchKey
}

// s3Unavailable tells whether err means the store cannot serve us now: no
// connection, a timeout, a connection cut mid-answer, or an answer of 5xx
// (SlowDown, ServiceUnavailable, InternalError, 507 for a full disk). An S3
// error that refuses the request itself (AccessDenied, NoSuchBucket, a bad
// signature) is a mistake to fix, not an outage; a caller that cancelled is
// neither.
func s3Unavailable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && resp.StatusCode != 0 {
		return resp.StatusCode >= 500
	}
	var netErr net.Error
	var urlErr *url.Error
	return errors.As(err, &netErr) || errors.As(err, &urlErr) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
