package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"
	"testing"

	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"
	"github.com/minio/minio-go/v7"
)

// The replies and failures that mean "Redis cannot serve us now", whether or
// not a test can make a real server give them (LOADING, READONLY, MASTERDOWN
// need a loading server or a replica).
func TestRedisErrorsThatMeanUnavailable(t *testing.T) {
	t.Parallel()
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for err, want := range map[error]bool{
		redis.Error("OOM command not allowed when used memory > 'maxmemory'."):                 true,
		redis.Error("LOADING Redis is loading the dataset in memory"):                          true,
		redis.Error("READONLY You can't write against a read only replica."):                   true,
		redis.Error("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set"): true,
		redis.Error("BUSY Redis is busy running a script."):                                    true,
		dial:                        true,
		fmt.Errorf("get: %w", dial): true,
		context.DeadlineExceeded:    true,
		io.EOF:                      true, // the server closed the connection
		redis.ErrPoolExhausted:      true,
		redis.Error("WRONGTYPE Operation against a key holding the wrong kind of value"): false,
		redis.Error("ERR unknown command 'HSET'"):                                        false,
		redis.Error("NOAUTH Authentication required."):                                   false,
		context.Canceled: false, // the caller gave up
	} {
		t.Run(err.Error(), func(t *testing.T) {
			is := is.New(t)
			got := redisError("get j/n", err)
			is.Equal(errors.Is(got, ErrUnavailable), want) // unavailable or not
			is.True(errors.Is(got, err))                   // the cause is kept
		})
	}
}

func TestS3ErrorsThatMeanUnavailable(t *testing.T) {
	t.Parallel()
	refused := &url.Error{Op: "Put", URL: "http://127.0.0.1:9/b/k", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	for err, want := range map[error]bool{
		refused:                  true,
		context.DeadlineExceeded: true,
		io.ErrUnexpectedEOF:      true, // the answer was cut off
		syscall.ECONNRESET:       true,
		minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}:              true,
		minio.ErrorResponse{Code: "InternalError", StatusCode: 500}:         true,
		minio.ErrorResponse{Code: "XMinioStorageFull", StatusCode: 507}:     true,
		minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}:          false,
		minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: 404}:          false,
		minio.ErrorResponse{Code: "SignatureDoesNotMatch", StatusCode: 403}: false,
		minio.ErrorResponse{Code: "InvalidArgument"}:                        false, // refused before sending
		context.Canceled: false,
		errors.New("Object name contains unsupported characters."): false,
	} {
		t.Run(err.Error(), func(t *testing.T) {
			is := is.New(t)
			got := (&s3Store{}).fail("get j/n", err)
			is.Equal(errors.Is(got, ErrUnavailable), want) // unavailable or not
			is.True(errors.Is(got, err))                   // the cause is kept
		})
	}
}
