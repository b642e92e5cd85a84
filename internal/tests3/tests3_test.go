package tests3_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/minio/minio-go/v7"
	"github.com/thumbnailed/thumbnailed/internal/tests3"
)

// An object put through the S3 API is a file in the bucket's folder, and a
// stopped server no longer listens.
func TestServerStoresObjectsAsFiles(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	b := tests3.New(t)
	is.True(strings.HasPrefix(b.URL, "s3://"+b.Name+"?endpoint="+b.Server.Endpoint))
	is.Equal(b.Getenv("AWS_ACCESS_KEY_ID"), b.Server.AccessKey)
	is.Equal(b.Getenv("AWS_SECRET_ACCESS_KEY"), b.Server.SecretKey)
	is.Equal(b.Getenv("HOME"), "") // nothing else leaks in

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := b.Server.Client(t).PutObject(ctx, b.Name, "a/b/c.txt", strings.NewReader("hello"), 5, minio.PutObjectOptions{})
	is.NoErr(err)
	got, err := os.ReadFile(filepath.Join(b.Dir(), "a", "b", "c.txt"))
	is.NoErr(err)
	is.Equal(string(got), "hello")
	is.Equal(b.Files(t, "a"), []string{"a/b/c.txt"})
	is.Equal(len(b.Files(t, "nothing/here")), 0)

	b.Server.Stop()
	b.Server.Stop() // again: harmless
	_, err = net.DialTimeout("tcp", b.Server.Addr, time.Second)
	is.True(err != nil) // stopped
}

// Tests running at once share one server, each with a bucket of its own.
func TestSharedGivesEachTestItsOwnBucket(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	one, two := tests3.Shared(t), tests3.Shared(t)
	is.Equal(one.Server, two.Server)
	is.True(one.Name != two.Name)
	ok, err := one.Server.Client(t).BucketExists(t.Context(), two.Name)
	is.NoErr(err)
	is.True(ok)
}
