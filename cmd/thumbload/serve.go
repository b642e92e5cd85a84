package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// sourceServer serves a directory's files on loopback, so that a run can
// submit sources by URL without another program (-serve).
type sourceServer struct {
	srv   *http.Server
	base  string
	names []string
}

// startSourceServer serves dir's regular files (not hidden ones) at
// http://ADDR/NAME. addr is a loopback address ("127.0.0.1:0" picks a port).
func startSourceServer(dir, addr string) (*sourceServer, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("-serve: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
			if fi, err := os.Stat(filepath.Join(dir, e.Name())); err == nil && fi.Mode().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("-serve: directory %s has no files", dir)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-serve: listen on %s (-serve-addr): %w", addr, err)
	}
	s := &sourceServer{
		srv:   &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second},
		base:  "http://" + dialable(ln.Addr().(*net.TCPAddr)),
		names: names,
	}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// urls are the served files' addresses, in name order.
func (s *sourceServer) urls() []source {
	out := make([]source, len(s.names))
	for i, n := range s.names {
		u := s.base + "/" + url.PathEscape(n)
		out[i] = source{name: n, url: u}
	}
	return out
}

func (s *sourceServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// runGet measures a synchronous image server (-get TEMPLATE, e.g. imgproxy
// side by side with the service): o.n GETs of the template with {url}
// replaced by the next source URL, o.c at a time; each answer must be 200
// with an image. Wall time is from the first request to the last answer.
func runGet(ctx context.Context, o options, sources []source) (*summary, error) {
	s := newSummary("get")
	s.Sources, s.Concurrency = len(sources), o.c
	hc := &http.Client{Timeout: o.timeout, Transport: &http.Transport{MaxIdleConnsPerHost: max(o.c, 4), DisableCompression: true}}
	sampler := startRSS(o.pids)
	meter := startCPU(o.pids)

	var (
		mu    sync.Mutex
		lats  []time.Duration
		last  time.Time
		wg    sync.WaitGroup
		next  = make(chan int)
		first = time.Now()
	)
	for range o.c {
		wg.Go(func() {
			for i := range next {
				target := strings.ReplaceAll(o.get, "{url}", sources[i%len(sources)].url)
				at := time.Now()
				err := getImage(ctx, hc, target)
				done := time.Now()
				mu.Lock()
				s.Submitted++
				last = later(last, done)
				if err != nil {
					s.Failed++
					s.FailedByCode[err.Error()]++
				} else {
					s.Succeeded++
					lats = append(lats, done.Sub(at))
				}
				mu.Unlock()
			}
		})
	}
	feedIndexes(ctx, next, o.n)
	wg.Wait()
	s.RSS = sampler.finish()
	s.CPU = meter.finish(s.Succeeded)
	s.Accepted = s.Submitted
	s.Seconds = seconds(last.Sub(first))
	if s.Seconds > 0 {
		s.JobsPerSecond = math.Round(float64(s.Succeeded)/s.Seconds*1000) / 1000
	}
	s.Latency = summarise(lats)
	return s, ctx.Err()
}

// getImage GETs target and reads the whole answer, which must be an image.
func getImage(ctx context.Context, hc *http.Client, target string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("bad -get URL: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("transport")
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	switch {
	case err != nil:
		return fmt.Errorf("transport")
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %d", resp.StatusCode)
	case !strings.HasPrefix(resp.Header.Get("Content-Type"), "image/") || n == 0:
		return fmt.Errorf("not an image")
	}
	return nil
}
