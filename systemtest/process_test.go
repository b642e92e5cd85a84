package systemtest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/testlog"
	"github.com/thumbnailed/thumbnailed/internal/testnet"
)

// webhookSecret signs every callback in these tests; the receiver verifies it.
const webhookSecret = "whsec_c3lzdGVtdGVzdC1zZWNyZXQtMzItYnl0ZXMhISE="

// apiKey is the key of a test's service when it needs one (startKeyed,
// the delivery tests): a signed link must open without it.
const apiKey = "systemtest-api-key-0123456789"

// linkSecret signs the image links; every api and worker process of a
// test shares it, so a link a worker put in a callback opens at the api.
const linkSecret = "systemtest-link-secret-0123456789"

func namespace() string { return "st-" + strings.ToLower(rand.Text()[:10]) }

// ---------------------------------------------------------------- redis

// redisServer is a real redis-server on a loopback port with its own
// directory and an append-only file synced on every write, so it can be
// stopped or killed and started again with its data.
type redisServer struct {
	t    *testing.T
	Port string
	Dir  string
	URL  string
	Logs *testlog.Buffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	needProcesses(t)
	_, port, _ := net.SplitHostPort(testnet.FreeAddr(t))
	r := &redisServer{t: t, Port: port, Dir: t.TempDir(), Logs: &testlog.Buffer{}}
	r.URL = "redis://127.0.0.1:" + port
	r.Start()
	t.Cleanup(func() {
		r.Kill()
		if t.Failed() {
			t.Logf("---- redis-server output ----\n%s", r.Logs.String())
		}
	})
	return r
}

// Start runs redis-server (again) on the same port and directory and waits
// until it answers PING with its data loaded.
func (r *redisServer) Start() {
	r.t.Helper()
	cmd := exec.Command("redis-server",
		"--port", r.Port, "--bind", "127.0.0.1", "--dir", r.Dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--daemonize", "no", "--logfile", "")
	cmd.Stdout, cmd.Stderr = r.Logs, r.Logs
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	ok := testapi.Eventually(10*time.Second, func() bool {
		c, err := redis.Dial("tcp", "127.0.0.1:"+r.Port, redis.DialConnectTimeout(time.Second))
		if err != nil {
			return false
		}
		defer c.Close()
		// PING answers LOADING while the AOF is replayed.
		s, err := redis.String(c.Do("PING"))
		return err == nil && s == "PONG"
	})
	if !ok {
		r.t.Fatalf("redis-server on port %s did not answer within 10s:\n%s", r.Port, r.Logs.String())
	}
}

// Shutdown stops Redis the polite way (SHUTDOWN flushes the AOF).
func (r *redisServer) Shutdown() {
	r.t.Helper()
	out, err := exec.Command("redis-cli", "-p", r.Port, "shutdown").CombinedOutput()
	if err != nil && len(out) > 0 {
		r.t.Logf("redis-cli shutdown: %v: %s", err, out)
	}
	r.wait()
}

// Kill stops Redis with SIGKILL (nothing flushed beyond what appendfsync
// always already wrote).
func (r *redisServer) Kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	r.wait()
}

func (r *redisServer) wait() {
	r.t.Helper()
	r.mu.Lock()
	done := r.done
	r.mu.Unlock()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		r.t.Fatalf("redis-server did not exit within 10s")
	}
}

// Conn is a direct connection for looking inside, closed by the caller.
func (r *redisServer) Conn() (redis.Conn, error) {
	return redis.Dial("tcp", "127.0.0.1:"+r.Port, redis.DialConnectTimeout(2*time.Second),
		redis.DialReadTimeout(5*time.Second))
}

// ---------------------------------------------------------------- thumbnailed

// process is one thumbnailed process (the binary built in TestMain).
type process struct {
	t    *testing.T
	Name string
	Addr string
	URL  string
	Logs *testlog.Buffer

	cmd      *exec.Cmd
	done     chan struct{}
	exitedAt time.Time
	state    *os.ProcessState
}

// serviceEnv is the environment every process of a test shares: this Redis
// and namespace, loopback allowed, generous rate limits, signed callbacks
// and links.
func serviceEnv(t *testing.T, r *redisServer, ns string) map[string]string {
	return map[string]string{
		"THUMBNAILED_LINK_SECRET":            linkSecret,
		"THUMBNAILED_REDIS_URL":              r.URL,
		"THUMBNAILED_NAMESPACE":              ns,
		"THUMBNAILED_ALLOW_PRIVATE_NETWORKS": "true",
		"THUMBNAILED_RATE_LIMIT":             "10000",
		"THUMBNAILED_RATE_BURST":             "10000",
		"THUMBNAILED_OUTBOX_DIR":             t.TempDir(),
		"THUMBNAILED_SHUTDOWN_TIMEOUT":       "15s",
		"THUMBNAILED_WEBHOOK_SECRET":         webhookSecret,
		"THUMBNAILED_LOG_LEVEL":              "info",
	}
}

// newEnv starts a Redis of the test's own and returns the environment of a
// service on it (serviceEnv, in a fresh namespace) with extra, pairs of
// names and values, set too.
func newEnv(t *testing.T, extra ...string) map[string]string {
	t.Helper()
	_, _, env := redisEnv(t, extra...)
	return env
}

// redisEnv is newEnv for a test that looks into its Redis or stops it: it
// returns the Redis and the namespace as well.
func redisEnv(t *testing.T, extra ...string) (*redisServer, string, map[string]string) {
	t.Helper()
	r, ns := startRedis(t), namespace()
	return r, ns, setPairs(serviceEnv(t, r, ns), extra)
}

// startKeyed starts a service whose one API key is apiKey, on a Redis of
// its own: a process in role ("api" or "all", and named so) with extra
// (pairs of names and values) in its environment. It returns that
// environment, for the service's other processes, the process, and a
// client of its API with the key.
func startKeyed(t *testing.T, role string, extra ...string) (map[string]string, *process, *testapi.Client) {
	t.Helper()
	env := newEnv(t, append([]string{"THUMBNAILED_API_KEYS", apiKey}, extra...)...)
	p := startProcess(t, role, role, env)
	return env, p, p.API().WithKey(apiKey)
}

// setPairs sets pairs of names and values (name, value, name, value, ...)
// in env and returns it.
func setPairs(env map[string]string, pairs []string) map[string]string {
	for i := 0; i+1 < len(pairs); i += 2 {
		env[pairs[i]] = pairs[i+1]
	}
	return env
}

// startProcess runs the binary in role with env (plus a fresh listen
// address) and waits for /healthz. When the test ends a process still
// running gets SIGTERM and must exit 0; its output is printed if the test failed.
func startProcess(t *testing.T, name, role string, env map[string]string, extra ...string) *process {
	t.Helper()
	full := map[string]string{}
	maps.Copy(full, env)
	setPairs(full, extra)
	if full["THUMBNAILED_ADDR"] == "" {
		full["THUMBNAILED_ADDR"] = testnet.FreeAddr(t)
	}
	if full["THUMBNAILED_WEBUI_ADDR"] == "" {
		full["THUMBNAILED_WEBUI_ADDR"] = testnet.FreeAddr(t)
	}
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "THUMBNAILED_") {
			environ = append(environ, kv)
		}
	}
	for k, v := range full {
		environ = append(environ, k+"="+v)
	}
	p := &process{t: t, Name: name, Addr: full["THUMBNAILED_ADDR"], Logs: &testlog.Buffer{}, done: make(chan struct{})}
	p.URL = "http://" + p.Addr
	p.cmd = exec.Command(binary, role)
	p.cmd.Env = environ
	p.cmd.Stdout, p.cmd.Stderr = p.Logs, p.Logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait() // also waits until all output is copied
		p.exitedAt = time.Now()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.Exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			if !p.WaitExit(25 * time.Second) {
				t.Errorf("%s did not stop within 25s of SIGTERM; killing it", name)
				_ = p.cmd.Process.Kill()
				p.WaitExit(5 * time.Second)
			} else if code := p.state.ExitCode(); code != 0 {
				t.Errorf("%s exited with %d after SIGTERM at the end of the test", name, code)
			}
		}
		if t.Failed() {
			t.Logf("---- %s (%s) output ----\n%s", name, role, p.Logs.String())
		}
	})
	client := &http.Client{Timeout: time.Second}
	healthy := testapi.Eventually(20*time.Second, func() bool {
		if p.Exited() {
			return true
		}
		resp, err := client.Get(p.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if p.Exited() {
		t.Fatalf("%s exited at start (%v):\n%s", name, p.state, p.Logs.String())
	}
	if !healthy {
		t.Fatalf("%s not healthy within 20s:\n%s", name, p.Logs.String())
	}
	return p
}

// Exited reports whether the process has ended.
func (p *process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitExit waits until the process ends or timeout passes.
func (p *process) WaitExit(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Signal sends sig and returns when it was sent.
func (p *process) Signal(sig os.Signal) time.Time {
	p.t.Helper()
	now := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s to %s: %v", sig, p.Name, err)
	}
	return now
}

// logLine is one JSON log record.
type logLine map[string]any

func (l logLine) str(k string) string { s, _ := l[k].(string); return s }

// Lines returns the process's JSON log records (gocraft/work's own
// "ERROR: ..." lines are plain text and left out; see PlainLines).
func (p *process) Lines() []logLine {
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(p.Logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var l logLine
		if json.Unmarshal(line, &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// PlainLines returns the output lines that start with prefix.
func (p *process) PlainLines(prefix string) []string {
	var out []string
	for _, line := range strings.Split(p.Logs.String(), "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return out
}

// JobIDs returns the job_id of every record whose msg is msg, in order.
func (p *process) JobIDs(msg string) []string {
	var ids []string
	for _, l := range p.Lines() {
		if l.str("msg") == msg {
			ids = append(ids, l.str("job_id"))
		}
	}
	return ids
}

// FirstAt is the time of the first record whose msg is msg.
func (p *process) FirstAt(msg string) (time.Time, bool) {
	for _, l := range p.Lines() {
		if l.str("msg") == msg {
			at, err := time.Parse(time.RFC3339Nano, l.str("time"))
			return at, err == nil
		}
	}
	return time.Time{}, false
}

// Running returns the jobs this process logged "job started" for and not
// (yet) "job succeeded" or "job failed".
func (p *process) Running() []string {
	open := map[string]bool{}
	var order []string
	for _, l := range p.Lines() {
		id := l.str("job_id")
		switch l.str("msg") {
		case "job started":
			if !open[id] {
				order = append(order, id)
			}
			open[id] = true
		case "job succeeded", "job failed", "transient failure; will retry",
			"could not record the result", "could not record the failure", "could not schedule the retry",
			"job erased while it ran", "job erased while it ran; its images are deleted":
			delete(open, id)
		}
	}
	var out []string
	for _, id := range order {
		if open[id] {
			out = append(out, id)
		}
	}
	return out
}

// ExitCode is the exit code once the process has ended (-1 for a signal).
func (p *process) ExitCode() int {
	if !p.Exited() {
		return -2
	}
	return p.state.ExitCode()
}

func (p *process) String() string { return fmt.Sprintf("%s (%s)", p.Name, p.Addr) }

// API is a client of the process's API.
func (p *process) API() *testapi.Client { return testapi.New(p.URL) }

// get fetches path from the process within 2 s.
func (p *process) get(path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := p.API().Try(ctx, http.MethodGet, path, nil, nil)
	return r.Status, string(r.Body), err
}

// Said reports whether the process logged msg about job id.
func (p *process) Said(id, msg string) bool {
	for _, l := range p.Lines() {
		if l.str("job_id") == id && l.str("msg") == msg {
			return true
		}
	}
	return false
}

// msgs lists the log messages a process wrote about a job.
func msgs(p *process, id string) []string {
	var out []string
	for _, l := range p.Lines() {
		if l.str("job_id") == id {
			out = append(out, l.str("msg"))
		}
	}
	return out
}
