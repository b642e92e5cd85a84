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
	"syscall"
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

Modes: load (the default: -n jobs, -c at a time), idle (-idle: pickup after
idle) and stall (-stall-pid: traffic while a process, Redis, is stopped with
SIGSTOP for -stall). Every answer is counted by operation, status, problem
code and Retry-After, with its answer time; a 503 with Retry-After is the
service's "not now" and not an error. With -redis, Redis's used_memory and
its keys are reported before and after the run.

Examples:
  thumbload -n 40 -c 4 -images photo.jpg -pid $(pgrep -n thumbnailed)
  thumbload -idle 10s -repeat 5 -images small.jpg
  thumbload -n 100 -url https://example.com/a.jpg,https://example.com/b.jpg
  thumbload -n 100 -c 100 -wait none -from 127.0.0.2,127.0.0.3 -images big.jpg -pid $API -redis redis://127.0.0.1:6379
  thumbload -n 200 -wait poll -idempotency -images small.jpg -redis redis://127.0.0.1:6379
  thumbload -stall-pid $(pgrep -n redis-server) -stall 20s -images small.jpg
  thumbload -n 40 -c 2 -serve photos/ -pids $API,$WORKER     sources by URL from a Go static server on loopback
  thumbload -n 40 -c 2 -serve photos/ -get 'http://127.0.0.1:8081/insecure/rs:fit:256:256/q:80/plain/{url}@jpg'
                                            a synchronous image server (imgproxy) on the same files

Flags:`

// options is the command line.
type options struct {
	addr     string
	key      string
	n, c     int
	urls     []string
	images   []string
	serve    string // a directory to serve on loopback and submit by URL
	serveAt  string
	get      string // -get mode: a synchronous image server's URL template
	width    int
	height   int
	listen   string
	secret   string
	timeout  time.Duration
	pids     []int
	idle     time.Duration
	repeat   int
	poll     time.Duration
	jsonLine bool

	from        []net.IP
	wait        string
	idempotency bool
	redisURL    string
	namespace   string
	settle      time.Duration
	stallPID    int
	stall       time.Duration
	around      time.Duration
	pause       time.Duration
	stallMax    time.Duration
}

// How a load run learns that its jobs ended (-wait).
const (
	waitCallback = "callback" // a callback_url with every job; wait for the callbacks
	waitPoll     = "poll"     // no callback_url; GET every job until it ended
	waitNone     = "none"     // no callback_url; end when the last submit is answered
)

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
	if opts.serve != "" {
		ss, err := startSourceServer(opts.serve, opts.serveAt)
		if err != nil {
			return err
		}
		defer ss.close()
		sources = ss.urls()
		fmt.Fprintf(stderr, "thumbload: serving %d files of %s at %s\n", len(sources), opts.serve, ss.base)
	}
	if opts.get != "" {
		sum, err := runGet(ctx, opts, sources)
		if err != nil {
			return err
		}
		sum.Service = opts.get
		return report(stdout, sum, opts.jsonLine)
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

	https, names := newHTTPClients(opts.from, opts.c, 2*time.Minute)
	c := &client{
		base:        strings.TrimRight(opts.addr, "/"),
		key:         opts.key,
		width:       opts.width,
		height:      opts.height,
		idempotency: opts.idempotency,
		https:       https,
		sources:     names,
		answers:     &answerLog{},
	}
	if opts.wait == waitCallback {
		c.callback = callbackURL
	}

	var sum *summary
	switch {
	case opts.idle > 0:
		sum, err = runIdle(ctx, opts, c, rcv, sources[0], stderr)
	case opts.stallPID != 0:
		sum, err = runStall(ctx, opts, c, rcv, sources)
	default:
		sum, err = runLoad(ctx, opts, c, rcv, sources)
	}
	if err != nil {
		return err
	}
	sum.Service = opts.addr
	sum.Width = opts.width
	return report(stdout, sum, opts.jsonLine)
}

// report prints the run's summary (and its JSON line when asked) and fails
// when the run saw something the contract does not allow.
func report(stdout io.Writer, sum *summary, jsonLine bool) error {
	sum.print(stdout)
	if jsonLine {
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
	fs.StringVar(&o.serve, "serve", "", "a directory whose files thumbload serves itself on loopback (-serve-addr) and submits by URL (cycled, in name order)")
	fs.StringVar(&o.serveAt, "serve-addr", "127.0.0.1:0", "with -serve: the static server's address")
	fs.StringVar(&o.get, "get", "", "get mode: instead of the service, GET this URL template ({url} = the next source URL), -n times, -c at a time, and time the answers (a synchronous image server such as imgproxy)")
	fs.IntVar(&o.width, "width", 256, "thumbnail width")
	fs.IntVar(&o.height, "height", 0, "thumbnail height (fit contain: within width x height); 0 sends none, so the height follows the width")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "address of the callback receiver")
	fs.StringVar(&o.secret, "secret", "", "THUMBNAILED_WEBHOOK_SECRET (whsec_...): verify every callback's signature")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long to wait for callbacks after the last submit")
	fs.IntVar(&pid, "pid", 0, "a service process whose RSS to sample every 50 ms")
	fs.StringVar(&pids, "pids", "", "comma-separated service processes (e.g. several workers): each and their sum are reported")
	fs.DurationVar(&o.idle, "idle", 0, "idle mode: sleep this long, submit ONE image (the first of -images/-url), time it; -repeat times")
	fs.IntVar(&o.repeat, "repeat", 5, "idle mode: how many idle periods and submissions")
	fs.DurationVar(&o.poll, "poll", 5*time.Millisecond, "idle mode: GET status interval")
	fs.BoolVar(&o.jsonLine, "json", false, "also print one JSON summary line")
	var from string
	fs.StringVar(&from, "from", "", "comma-separated local addresses to send from, one request after another (e.g. 127.0.0.2,127.0.0.3: on Linux any 127/8 address is loopback), so the service sees several clients")
	fs.StringVar(&o.wait, "wait", waitCallback, "how a load run learns its jobs ended: callback (callback_url, wait for the callbacks), poll (no callback_url; GET each job), none (no callback_url, no waiting: e.g. an api with no worker)")
	fs.BoolVar(&o.idempotency, "idempotency", false, "send a fresh Idempotency-Key with every submit")
	fs.StringVar(&o.redisURL, "redis", "", "the service's Redis URL: report used_memory (before, peak, after), DBSIZE and its keys by shape before and after the run")
	fs.StringVar(&o.namespace, "namespace", "thumbnailed", "with -redis: THUMBNAILED_NAMESPACE, the prefix of the keys counted")
	fs.DurationVar(&o.settle, "settle", 2*time.Second, "with -redis: wait this long after the run before the \"after\" snapshot")
	fs.IntVar(&o.stallPID, "stall-pid", 0, "stall mode: a process (redis-server) to stop with SIGSTOP for -stall while traffic goes on, then SIGCONT")
	fs.DurationVar(&o.stall, "stall", 20*time.Second, "stall mode: how long the process stays stopped")
	fs.DurationVar(&o.around, "around", 5*time.Second, "stall mode: traffic before the stop and after the SIGCONT")
	fs.DurationVar(&o.pause, "pause", 100*time.Millisecond, "stall mode: each of the -c clients pauses this long between requests")
	fs.DurationVar(&o.stallMax, "stall-max", 2*time.Second, "stall mode: the longest answer allowed to a request sent during the stall")
	if err := fs.Parse(args[1:]); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q (see -h)", fs.Args())
	}

	var bad []string
	o.urls = splitList(urls)
	o.images = splitList(images)
	given := 0
	for _, g := range []bool{len(o.urls) > 0, len(o.images) > 0, o.serve != ""} {
		if g {
			given++
		}
	}
	if given != 1 {
		bad = append(bad, "give exactly one of -images, -url and -serve")
	}
	if o.get != "" {
		if !strings.Contains(o.get, "{url}") {
			bad = append(bad, "-get: the template must contain {url}")
		}
		if len(o.images) > 0 {
			bad = append(bad, "-get takes sources by URL: -url or -serve, not -images")
		}
		if o.idle > 0 || o.stallPID != 0 || o.redisURL != "" {
			bad = append(bad, "-get is a mode of its own: no -idle, -stall-pid or -redis")
		}
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
	if o.height < 0 {
		bad = append(bad, "-height must not be negative")
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
	for _, a := range splitList(from) {
		ip := net.ParseIP(a)
		if ip == nil {
			bad = append(bad, fmt.Sprintf("-from: %q is not an IP address", a))
			continue
		}
		o.from = append(o.from, ip)
	}
	switch o.wait {
	case waitCallback, waitPoll:
	case waitNone:
		if o.idle > 0 || o.stallPID != 0 {
			bad = append(bad, "-wait none is for load runs only")
		}
	default:
		bad = append(bad, fmt.Sprintf("-wait: %q is not callback, poll or none", o.wait))
	}
	if o.idle > 0 && o.wait != waitCallback {
		bad = append(bad, "-idle times callbacks: -wait must be callback")
	}
	if o.idle > 0 && o.stallPID != 0 {
		bad = append(bad, "give at most one of -idle and -stall-pid")
	}
	if o.stallPID != 0 {
		if o.stallPID < 0 || syscall.Kill(o.stallPID, 0) != nil {
			bad = append(bad, fmt.Sprintf("-stall-pid %d: no such process of ours", o.stallPID))
		}
		if o.stall <= 0 || o.around <= 0 || o.pause < 0 || o.stallMax <= 0 {
			bad = append(bad, "-stall, -around and -stall-max must be positive, -pause not negative")
		}
		if o.redisURL != "" {
			bad = append(bad, "-redis cannot watch a Redis that -stall-pid stops")
		}
	}
	if o.redisURL != "" && o.settle < 0 {
		bad = append(bad, "-settle must not be negative")
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
