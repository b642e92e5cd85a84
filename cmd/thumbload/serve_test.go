package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"
)

// A synchronous image server that fetches ?src= and answers its bytes as a
// JPEG, as imgproxy answers a plain source URL.
type fakeImageServer struct {
	mu      sync.Mutex
	fetched map[string]int
}

func (f *fakeImageServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	src := r.URL.Query().Get("src")
	resp, err := http.Get(src)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		http.Error(w, "source answered "+resp.Status, http.StatusNotFound)
		return
	}
	f.mu.Lock()
	f.fetched[src]++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "image/jpeg")
	_, _ = w.Write(b)
}

func TestGetRunServesTheFilesAndTimesEveryAnswer(t *testing.T) {
	is := is.New(t)
	dir := images(t, "b.jpg", "a.jpg", ".hidden")
	fake := &fakeImageServer{fetched: map[string]int{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()

	stdout, err := thumbload("-serve", dir, "-get", srv.URL+"/?src={url}", "-n", "6", "-c", "2",
		"-pid", strconv.Itoa(os.Getpid()), "-json")

	is.NoErr(err)
	s := lastJSON(t, stdout)
	is.Equal(s.Mode, "get")
	is.Equal([3]int{s.Submitted, s.Succeeded, s.Failed}, [3]int{6, 6, 0})
	is.Equal(s.Sources, 2) // the hidden file is not served
	is.Equal(s.Latency.N, 6)
	is.True(s.JobsPerSecond > 0)
	is.True(s.CPU != nil && s.CPU.WallSeconds > 0)
	// Each served file was fetched by URL, in turn.
	is.Equal(len(fake.fetched), 2)
	for src, n := range fake.fetched {
		is.True(strings.HasSuffix(src, "/a.jpg") || strings.HasSuffix(src, "/b.jpg"))
		is.Equal(n, 3)
	}
}

func TestGetRunCountsAnswersThatAreNotImages(t *testing.T) {
	is := is.New(t)
	dir := images(t, "a.jpg")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusUnprocessableEntity)
	}))
	defer srv.Close()

	stdout, err := thumbload("-serve", dir, "-get", srv.URL+"/{url}", "-n", "3", "-c", "1", "-json")

	s := failedRun(t, stdout, err, "3 jobs failed")
	is.Equal(s.FailedByCode, map[string]int{"status 422": 3})
}

func TestGetFlagsAreChecked(t *testing.T) {
	is := is.New(t)
	_, err := thumbload("-images", "x.jpg", "-serve", "d", "-get", "http://x/")
	is.True(err != nil)
	for _, want := range []string{"give exactly one of -images, -url and -serve", "-get: the template must contain {url}", "-get takes sources by URL"} {
		is.True(strings.Contains(err.Error(), want))
	}
}

func TestCPUCountersParse(t *testing.T) {
	is := is.New(t)
	busy, err := parseMachineBusy([]byte("cpu  100 2 30 5000 40 5 6 7 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"))
	is.NoErr(err)
	is.Equal(busy, int64(100+2+30+5+6+7)) // idle and iowait are not busy
	// A command name with spaces and parentheses does not shift the fields.
	n, err := parseProcessTicks([]byte("42 (my (odd) cmd) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 100 0 0"))
	is.NoErr(err)
	is.Equal(n, int64(325))
	_, err = parseMachineBusy([]byte("intr 1 2 3"))
	is.True(err != nil)
}
