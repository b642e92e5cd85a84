package systemtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
)

// What the client console tests (issue 15) share: a source that holds its
// answer until the test lets it go, API keys files, and a few log readers.

// gateSource is a source server whose every URL (Gate) holds its answer
// until the test releases it, so a job stays in its fetch stage, status
// processing, exactly as long as the test needs.
type gateSource struct {
	*httptest.Server
	image []byte

	mu    sync.Mutex
	gates map[string]*gate
	n     int
}

type gate struct {
	arrived     chan struct{}
	arrivedOnce sync.Once
	release     chan struct{}
	releaseOnce sync.Once
}

func newGateSource(t *testing.T, image []byte) *gateSource {
	s := &gateSource{image: image, gates: map[string]*gate{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		g := s.gates[r.URL.Path]
		s.mu.Unlock()
		if g == nil {
			http.NotFound(w, r)
			return
		}
		g.arrivedOnce.Do(func() { close(g.arrived) })
		select {
		case <-g.release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "image/jpeg")
		w.Header().Set("Content-Length", strconv.Itoa(len(s.image)))
		_, _ = w.Write(s.image)
	}))
	t.Cleanup(s.Close)
	return s
}

// Gate is a new source URL: its request is held until release is called
// (or the test ends); arrived is closed once the request has come.
func (s *gateSource) Gate(t *testing.T) (url string, arrived <-chan struct{}, release func()) {
	s.mu.Lock()
	s.n++
	path := fmt.Sprintf("/gate/%d.jpg", s.n)
	g := &gate{arrived: make(chan struct{}), release: make(chan struct{})}
	s.gates[path] = g
	s.mu.Unlock()
	release = func() { g.releaseOnce.Do(func() { close(g.release) }) }
	t.Cleanup(release) // before the server closes, which waits for the held request
	return s.URL + path, g.arrived, release
}

// newSecret is a fresh webhook secret (whsec_ and base64 of 32 bytes).
func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// newKey is a fresh API key.
func newKey(name string) string { return "st-" + name + "-" + strings.ToLower(rand.Text()) }

// keyEntry is one entry of an API keys file (DESIGN.md "API keys file").
type keyEntry struct {
	Name           string   `json:"name"`
	KeySHA256      string   `json:"key_sha256,omitempty"`
	Key            string   `json:"key,omitempty"`
	WebhookSecrets []string `json:"webhook_secrets,omitempty"`
}

// digest is the key_sha256 of key.
func digest(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:])
}

// writeKeysFile writes content to path the way an operator's deploy tool
// should: to a file beside it, then renamed over it, so a reload never
// reads half a file. content is JSON-encoded unless it is a string.
func writeKeysFile(t *testing.T, path string, content any) {
	t.Helper()
	var b []byte
	switch c := content.(type) {
	case string:
		b = []byte(c)
	default:
		var err error
		if b, err = json.Marshal(c); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(filepath.Dir(path), ".keys-"+rand.Text()[:8])
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// keysFileEnv writes content to a new API keys file and returns the file
// and the environment of a service that reads it (newEnv with extra).
func keysFileEnv(t *testing.T, content any, extra ...string) (string, map[string]string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "keys.json")
	writeKeysFile(t, file, content)
	return file, newEnv(t, append([]string{"THUMBNAILED_API_KEYS_FILE", file}, extra...)...)
}

// count is how many records of the process have msg.
func (p *process) count(msg string) int {
	n := 0
	for _, l := range p.Lines() {
		if l.str("msg") == msg {
			n++
		}
	}
	return n
}

// saidOn reports whether the process logged msg about job id's delivery on
// channel.
func (p *process) saidOn(id, channel, msg string) bool {
	for _, l := range p.Lines() {
		if l.str("job_id") == id && l.str("channel") == channel && l.str("msg") == msg {
			return true
		}
	}
	return false
}

// waitLog waits until cond holds for the process's log, failing t after
// timeout with what is awaited.
func waitLog(t *testing.T, p *process, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !testapi.Eventually(timeout, cond) {
		t.Fatalf("%s did not log %s within %s", p.Name, what, timeout)
	}
}

// statuses is the statuses of the status events, each change once
// (a status event follows every change of the record, its deliveries'
// too, so one status can come several times in a row).
func statuses(events []testapi.SSE) []string {
	var out []string
	for _, ev := range events {
		if ev.Event != "status" {
			continue
		}
		s := testapi.Status(ev)
		if len(out) == 0 || out[len(out)-1] != s {
			out = append(out, s)
		}
	}
	return out
}

// increasing fails t unless the events' ids are numbers that only grow,
// starting above after.
func increasing(t *testing.T, after int64, events []testapi.SSE) {
	t.Helper()
	last := after
	for _, ev := range events {
		id := testapi.EventID(ev)
		if id <= last {
			t.Errorf("event id %q after %d: ids must increase (%s)", ev.ID, last, testapi.Describe(events))
			return
		}
		last = id
	}
}
