// Package tests3 gives tests a real S3 server: a versitygw (Apache-2.0) serving
// a temporary directory on a free loopback port. Each bucket is a folder of that
// directory and each object a file, so a test can see what is stored.
//
// The versitygw binary is looked up on PATH and where go install puts it
// ($(go env GOBIN), else $(go env GOPATH)/bin), where .ci/versitygw installs it. Without it a test is skipped, or fails
// when CI is set.
package tests3

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/thumbnailed/thumbnailed/internal/testci"
	"github.com/thumbnailed/thumbnailed/internal/testlog"
)

// Version is the versitygw release CI installs.
const Version = "v1.8.0"

// Region is the region the server answers for.
const Region = "us-east-1"

// Server is one running versitygw.
type Server struct {
	Addr      string // 127.0.0.1:PORT
	Endpoint  string // http://127.0.0.1:PORT
	Dir       string // one folder per bucket
	AccessKey string
	SecretKey string

	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has ended
	output *testlog.Buffer
	stop   sync.Once
}

// Bucket is a fresh, empty bucket on a Server.
type Bucket struct {
	Server *Server
	Name   string
	// URL is a THUMBNAILED_STORAGE_URL for the bucket's root.
	URL string
}

// New starts a server of t's own, stopped when t ends, and returns a fresh bucket on it.
func New(t testing.TB) *Bucket {
	t.Helper()
	return Start(t).NewBucket(t)
}

var shared struct {
	sync.Mutex
	server *Server
	users  int
	dir    string
}

// Shared returns a fresh bucket on a server shared by the tests that run at the
// same time (parallel tests and subtests): it starts with the first of them and
// stops when the last one ends.
func Shared(t testing.TB) *Bucket {
	t.Helper()
	binary := Binary(t)
	shared.Lock()
	if shared.server == nil {
		dir, err := os.MkdirTemp("", "tests3-")
		if err != nil {
			shared.Unlock()
			t.Fatal(err)
		}
		s, err := start(binary, dir)
		if err != nil {
			os.RemoveAll(dir)
			shared.Unlock()
			t.Fatal(err)
		}
		shared.server, shared.dir = s, dir
	}
	shared.users++
	s := shared.server
	shared.Unlock()
	t.Cleanup(func() {
		shared.Lock()
		defer shared.Unlock()
		shared.users--
		if shared.users == 0 {
			shared.server.Stop()
			os.RemoveAll(shared.dir)
			shared.server, shared.dir = nil, ""
		}
	})
	return s.NewBucket(t)
}

// Start starts a server of t's own over t.TempDir(), stopped when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	binary := Binary(t)
	s, err := start(binary, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Binary returns the path of versitygw, or skips t (fails it when CI is set).
func Binary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	if dir := installDir(); dir != "" {
		bin := filepath.Join(dir, "versitygw")
		if fi, err := os.Stat(bin); err == nil && !fi.IsDir() {
			return bin
		}
	}
	testci.Missing(t, "versitygw is not on PATH or where go install puts it; install it with .ci/versitygw (go install github.com/versity/versitygw/cmd/versitygw@"+Version+")")
	return ""
}

// installDir is where go install puts binaries: GOBIN, else the first GOPATH's bin.
var installDir = sync.OnceValue(func() string {
	out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		return ""
	}
	gobin, gopath, _ := strings.Cut(string(out), "\n")
	if gobin = strings.TrimSpace(gobin); gobin != "" {
		return gobin
	}
	first, _, _ := strings.Cut(strings.TrimSpace(gopath), string(os.PathListSeparator))
	if first == "" {
		return ""
	}
	return filepath.Join(first, "bin")
})

// start runs versitygw over dir and waits until it answers. A port taken
// between choosing and binding it is retried with another.
func start(binary, dir string) (*Server, error) {
	var err error
	for range 3 {
		var s *Server
		s, err = startOnce(binary, dir)
		if err == nil {
			return s, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, err
}

func startOnce(binary, dir string) (*Server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Addr:      addr,
		Endpoint:  "http://" + addr,
		Dir:       dir,
		AccessKey: "tests3-" + strings.ToLower(rand.Text()[:8]),
		SecretKey: "secret-" + rand.Text(),
		exited:    make(chan struct{}),
		output:    &testlog.Buffer{Max: 64 << 10}, // for error messages
	}
	s.cmd = exec.Command(binary, "--port", addr, "--quiet", "posix", dir)
	s.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	s.cmd.Stdout = s.output
	s.cmd.Stderr = s.output
	s.cmd.SysProcAttr = sysProcAttr()
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(15 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return s, nil // any answer, even 403, means it serves
		}
		select {
		case <-s.exited:
			return nil, errors.New("versitygw exited before answering: " + s.output.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, errors.New("versitygw did not answer within 15s: " + s.output.String())
		}
	}
}

// freeAddr returns a free 127.0.0.1 host:port. Another process could take it
// before versitygw binds it: start then tries another.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Stop stops the server and waits until it has ended. It can be called again.
func (s *Server) Stop() {
	s.stop.Do(func() {
		_ = s.cmd.Process.Kill()
		<-s.exited
	})
}

// Getenv answers AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY with the server's
// credentials and "" for anything else.
func (s *Server) Getenv(name string) string {
	switch name {
	case "AWS_ACCESS_KEY_ID":
		return s.AccessKey
	case "AWS_SECRET_ACCESS_KEY":
		return s.SecretKey
	}
	return ""
}

// Client returns a minio-go client for the server, to look behind the code under test.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(s.Addr, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region:       Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// NewBucket creates a bucket with a fresh name, through the S3 API.
func (s *Server) NewBucket(t testing.TB) *Bucket {
	t.Helper()
	name := "t-" + strings.ToLower(rand.Text()[:16])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Client(t).MakeBucket(ctx, name, minio.MakeBucketOptions{Region: Region}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	return &Bucket{Server: s, Name: name, URL: s.url(name, "")}
}

func (s *Server) url(bucket, prefix string) string {
	u := "s3://" + bucket
	if prefix != "" {
		u += "/" + prefix
	}
	return u + "?endpoint=" + s.Endpoint + "&region=" + Region + "&path_style=true"
}

// URLWithPrefix is a THUMBNAILED_STORAGE_URL for prefix (like "a/b") in the bucket.
func (b *Bucket) URLWithPrefix(prefix string) string { return b.Server.url(b.Name, prefix) }

// Dir is the bucket's folder: an object k is the file Dir()/k.
func (b *Bucket) Dir() string { return filepath.Join(b.Server.Dir, b.Name) }

// Getenv is the server's Getenv.
func (b *Bucket) Getenv(name string) string { return b.Server.Getenv(name) }

// Files lists the files under the bucket's folder dir (relative to the
// bucket, slash-separated), skipping versitygw's own metadata.
func (b *Bucket) Files(t testing.TB, dir string) []string {
	t.Helper()
	root := b.Dir()
	var files []string
	err := filepath.WalkDir(filepath.Join(root, filepath.FromSlash(dir)), func(path string, d os.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return filepath.SkipDir
		}
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".sgw") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
