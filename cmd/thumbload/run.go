package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/thumbnailed/thumbnailed/webhook"
)

const usageHead = `usage: thumbload [flags]

Submits jobs to a RUNNING Thumbnailed service and reports throughput,
submit->callback latency (p50/p95/p99/max), errors and, with -pid/-pids, the
service's peak RSS. It starts nothing but its own callback receiver on
-listen, so the service must let callbacks reach loopback:

  THUMBNAILED_ALLOW_PRIVATE_NETWORKS=true   callbacks to 127.0.0.1 (and -url sources on loopback)
  THUMBNAILED_RATE_LIMIT=1000 THUMBNAILED_RATE_BURST=1000
                                            the defaults (10/s, burst 20) answer 429 to a load
                                            test and to -idle's status polling every 5 ms

Examples:
  thumbload -n 40 -c 4 -images photo.jpg -pid $(pgrep -n thumbnailed)
  thumbload -idle 10s -repeat 5 -images small.jpg
  thumbload -n 100 -url https://example.com/a.jpg,https://example.com/b.jpg

Flags:`

// options is the command line.
type options struct {
	addr     string
	key      string
	n, c     int
	urls     []string
	images   []string
	width    int
	listen   string
	secret   string
	timeout  time.Duration
	pids     []int
	idle     time.Duration
	repeat   int
	poll     time.Duration
	jsonLine bool
}

// run is the whole program; main only supplies the OS.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	sources, err := loadSources(opts)
	if err != nil {
		return err
	}

	rcv := newReceiver(opts.secret)
	ln, err := net.Listen("tcp", opts.listen)
	if err != nil {
		return fmt.Errorf("callback receiver: listen on %s (-listen): %w", opts.listen, err)
	}
	srv := &http.Server{Handler: rcv, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		// Let the last callbacks get their answers: a cut connection would
		// be a failed delivery the service retries.
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	callbackURL := "http://" + dialable(ln.Addr().(*net.TCPAddr)) + receiverPath
	fmt.Fprintf(stderr, "thumbload: callbacks to %s, service %s\n", callbackURL, opts.addr)

	c := &client{
		base:     strings.TrimRight(opts.addr, "/"),
		key:      opts.key,
		width:    opts.width,
		callback: callbackURL,
		http: &http.Client{
			Timeout:   2 * time.Minute,
			Transport: &http.Transport{MaxIdleConnsPerHost: max(opts.c, 4), DisableCompression: true},
		},
	}

	var sum *summary
	if opts.idle > 0 {
		sum, err = runIdle(ctx, opts, c, rcv, sources[0], stderr)
	} else {
		sum, err = runLoad(ctx, opts, c, rcv, sources)
	}
	if err != nil {
		return err
	}
	sum.Service = opts.addr
	sum.Width = opts.width
	sum.print(stdout)
	if opts.jsonLine {
		b, _ := json.Marshal(sum)
		fmt.Fprintln(stdout, string(b))
	}
	if problems := sum.problems(); problems != "" {
		return errors.New(problems)
	}
	return nil
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var urls, images, pids string
	var pid int
	fs := flag.NewFlagSet("thumbload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, usageHead)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.addr, "addr", "http://127.0.0.1:8080", "the service's base URL")
	fs.StringVar(&o.key, "key", "", "API key, sent as Authorization: Bearer (when the service sets THUMBNAILED_API_KEYS)")
	fs.IntVar(&o.n, "n", 40, "jobs to submit")
	fs.IntVar(&o.c, "c", 4, "submissions in flight at once")
	fs.StringVar(&urls, "url", "", "comma-separated source URLs to submit instead of uploads (cycled)")
	fs.StringVar(&images, "images", "", "comma-separated image files and/or directories to upload (cycled; a directory means its files)")
	fs.IntVar(&o.width, "width", 256, "thumbnail width")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "address of the callback receiver")
	fs.StringVar(&o.secret, "secret", "", "THUMBNAILED_WEBHOOK_SECRET (whsec_...): verify every callback's signature")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long to wait for callbacks after the last submit")
	fs.IntVar(&pid, "pid", 0, "a service process whose RSS to sample every 50 ms")
	fs.StringVar(&pids, "pids", "", "comma-separated service processes (e.g. several workers): each and their sum are reported")
	fs.DurationVar(&o.idle, "idle", 0, "idle mode: sleep this long, submit ONE image (the first of -images/-url), time it; -repeat times")
	fs.IntVar(&o.repeat, "repeat", 5, "idle mode: how many idle periods and submissions")
	fs.DurationVar(&o.poll, "poll", 5*time.Millisecond, "idle mode: GET status interval")
	fs.BoolVar(&o.jsonLine, "json", false, "also print one JSON summary line")
	if err := fs.Parse(args[1:]); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q (see -h)", fs.Args())
	}

	var bad []string
	o.urls = splitList(urls)
	o.images = splitList(images)
	if (len(o.urls) == 0) == (len(o.images) == 0) {
		bad = append(bad, "give exactly one of -images and -url")
	}
	if o.n < 1 {
		bad = append(bad, "-n must be at least 1")
	}
	if o.c < 1 {
		bad = append(bad, "-c must be at least 1")
	}
	if o.width < 1 {
		bad = append(bad, "-width must be at least 1")
	}
	if o.repeat < 1 {
		bad = append(bad, "-repeat must be at least 1")
	}
	if o.poll <= 0 {
		bad = append(bad, "-poll must be positive")
	}
	if o.timeout <= 0 {
		bad = append(bad, "-timeout must be positive")
	}
	if o.secret != "" {
		if err := webhook.ValidSecret(o.secret); err != nil {
			bad = append(bad, "-secret: "+err.Error())
		}
	}
	if pid != 0 {
		o.pids = append(o.pids, pid)
	}
	for _, p := range splitList(pids) {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			bad = append(bad, fmt.Sprintf("-pids: %q is not a process id", p))
			continue
		}
		o.pids = append(o.pids, n)
	}
	for _, p := range o.pids {
		if _, err := readRSS(p); err != nil {
			bad = append(bad, fmt.Sprintf("-pid %d: %v", p, err))
		}
	}
	if len(bad) > 0 {
		return o, errors.New(strings.Join(bad, "\n"))
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// source is one thing to submit: an upload or a URL.
type source struct {
	name string
	url  string
	data []byte
}

// loadSources reads every image once (directories expand to their regular
// files, sorted), or wraps the URLs.
func loadSources(o options) ([]source, error) {
	if len(o.urls) > 0 {
		out := make([]source, len(o.urls))
		for i, u := range o.urls {
			out[i] = source{name: u, url: u}
		}
		return out, nil
	}
	var paths []string
	for _, p := range o.images {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("-images: %w", err)
		}
		if !fi.IsDir() {
			paths = append(paths, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("-images: %w", err)
		}
		var names []string
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				names = append(names, filepath.Join(p, e.Name()))
			}
		}
		sort.Strings(names)
		if len(names) == 0 {
			return nil, fmt.Errorf("-images: directory %s has no files", p)
		}
		paths = append(paths, names...)
	}
	out := make([]source, 0, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("-images: %w", err)
		}
		out = append(out, source{name: filepath.Base(p), data: data})
	}
	return out, nil
}

// dialable is the address a service on this machine can post to: an
// unspecified listen address (0.0.0.0, ::) becomes loopback.
func dialable(a *net.TCPAddr) string {
	ip := a.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(a.Port))
}
