package webui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testlog"
	"github.com/thumbnailed/thumbnailed/internal/testredis"
	"github.com/thumbnailed/thumbnailed/internal/testrun"
)

const testPassword = "correct horse battery staple"

// testRedis is a Redis pool and a namespace of its own: a real Redis when
// THUMBNAILED_TEST_REDIS_URL is set, else an embedded miniredis.
func testRedis(t *testing.T) (*redis.Pool, string) {
	t.Helper()
	r := testredis.New(t)
	return r.Pool, r.Namespace
}

// startUI runs the UI behind its proxy on a free loopback port, as Run does,
// and returns its base URL. The UI is stopped, and must stop cleanly, when
// the test ends.
func startUI(t *testing.T, password, namespace string, pool *redis.Pool, hosts ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	testrun.Background(t, "web UI", 15*time.Second, func(ctx context.Context) error {
		return serve(ctx, testLogger(t), Config{Password: password, Hosts: hosts}, namespace, pool, ln)
	})
	return "http://" + ln.Addr().String()
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewJSONHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// failedJobs enqueues one job of queueName for nobody to run, and runs a real
// gocraft/work worker pool briefly so that one job ends in the retry set
// (retryName, 3 tries allowed) and one in the dead set (deadName, 1 try).
func failedJobs(t *testing.T, namespace string, pool *redis.Pool, queueName, retryName, deadName string) {
	t.Helper()
	enq := work.NewEnqueuer(namespace, pool)
	for _, name := range []string{queueName, retryName, deadName} {
		if _, err := enq.Enqueue(name, work.Q{"image_id": "img-" + name}); err != nil {
			t.Fatalf("enqueue %s: %v", name, err)
		}
	}
	wp := work.NewWorkerPool(struct{}{}, 2, namespace, pool)
	wp.JobWithOptions(retryName, work.JobOptions{MaxFails: 3}, func(*work.Job) error {
		return errors.New("source_unreachable: try again later")
	})
	wp.JobWithOptions(deadName, work.JobOptions{MaxFails: 1}, func(*work.Job) error {
		return errors.New("corrupt_image: the image cannot be decoded")
	})
	wp.Start()
	defer wp.Stop()

	client := work.NewClient(namespace, pool)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, retries, err1 := client.RetryJobs(1)
		_, deads, err2 := client.DeadJobs(1)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		if retries == 1 && deads == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s: %d retry jobs and %d dead jobs, want 1 and 1", retries, deads)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(t *testing.T, url, user, password string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" || password != "" {
		req.SetBasicAuth(user, password)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestOperatorsMustLogIn(t *testing.T) {
	is := is.New(t)
	pool, ns := testRedis(t)
	_, err := work.NewEnqueuer(ns, pool).Enqueue("make_thumbnail", work.Q{"job_id": "abc"})
	is.NoErr(err)
	base := startUI(t, testPassword, ns, pool)

	resp, _ := get(t, base+"/queues", "", "")
	is.Equal(resp.StatusCode, http.StatusUnauthorized)                              // no credentials
	is.Equal(resp.Header.Get("WWW-Authenticate"), `Basic realm="thumbnailed jobs"`) // the browser asks for them

	resp, body := get(t, base+"/queues", "admin", "wrong password")
	is.Equal(resp.StatusCode, http.StatusUnauthorized) // wrong password
	is.True(!strings.Contains(body, "make_thumbnail")) // nothing leaks

	resp, _ = get(t, base+"/", "admin", testPassword[:len(testPassword)-1])
	is.Equal(resp.StatusCode, http.StatusUnauthorized) // a prefix of the password is not the password

	resp, body = get(t, base+"/queues", "any-user-name", testPassword)
	is.Equal(resp.StatusCode, http.StatusOK)                        // the right password, any user name
	is.True(strings.Contains(body, `"job_name": "make_thumbnail"`)) // the queue is listed
	is.Equal(resp.Header.Get("X-Frame-Options"), "DENY")
	is.Equal(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
	is.Equal(resp.Header.Get("Referrer-Policy"), "same-origin")
	is.Equal(resp.Header.Get("X-Content-Type-Options"), "nosniff")

	resp, body = get(t, base+"/", "", testPassword)
	is.Equal(resp.StatusCode, http.StatusOK) // the page itself
	is.True(strings.Contains(body, `<script src="/work.js">`))
}

func TestSecurityHeadersOnRefusals(t *testing.T) {
	is := is.New(t)
	pool, ns := testRedis(t)
	base := startUI(t, testPassword, ns, pool)

	resp, _ := get(t, base+"/", "", "")
	is.Equal(resp.StatusCode, http.StatusUnauthorized)
	is.Equal(resp.Header.Get("X-Frame-Options"), "DENY") // even the login prompt cannot be framed
	is.Equal(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
}

func TestHealthNeedsNoPassword(t *testing.T) {
	is := is.New(t)
	pool, ns := testRedis(t)
	base := startUI(t, testPassword, ns, pool)

	resp, body := get(t, base+"/healthz", "", "")
	is.Equal(resp.StatusCode, http.StatusOK) // the container's health check has no password
	is.Equal(body, "ok\n")                   // and learns nothing else
	resp, _ = get(t, base+"/healthz/../queues", "", "")
	is.Equal(resp.StatusCode, http.StatusUnauthorized) // no way around the login through it
}

func TestCrossOriginActionsAreRefused(t *testing.T) {
	is := is.New(t)
	pool, ns := testRedis(t)
	failedJobs(t, ns, pool, "make_thumbnail", "fetch_source", "decode_image")
	base := startUI(t, testPassword, ns, pool)
	host := strings.TrimPrefix(base, "http://")

	client := work.NewClient(ns, pool)
	dead, count, err := client.DeadJobs(1)
	is.NoErr(err)
	is.Equal(count, int64(1))
	retryURL := fmt.Sprintf("%s/retry_dead_job/%d/%s", base, dead[0].DiedAt, dead[0].ID)

	post := func(headers map[string]string) (*http.Response, string) {
		req, err := http.NewRequest(http.MethodPost, retryURL, nil)
		is.NoErr(err)
		req.SetBasicAuth("ops", testPassword)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		return do(t, req)
	}
	for _, refused := range []map[string]string{
		{"Origin": "https://evil.example"},                           // another site's form or script
		{"Origin": "null"},                                           // a sandboxed or file: page
		{"Origin": "http://" + host + ".evil.example"},               // a look-alike host
		{"Sec-Fetch-Site": "cross-site", "Origin": "http://" + host}, // the browser says cross-site
		{"Sec-Fetch-Site": "same-site"},                              // a sibling subdomain
		{"Referer": "https://evil.example/attack.html"},              // no Origin, a foreign Referer
		{}, // nothing says where it comes from
		{"Origin": "https://evil.example", "Referer": "http://" + host + "/"}, // the Origin is what counts
	} {
		resp, _ := post(refused)
		is.Equal(resp.StatusCode, http.StatusForbidden) // refused
		_, count, err := client.DeadJobs(1)
		is.NoErr(err)
		is.Equal(count, int64(1)) // and the job is still dead
	}

	resp, _ := post(map[string]string{"Origin": "https://evil.example"})
	is.Equal(resp.Header.Get("X-Frame-Options"), "DENY")

	// Authentication comes first: without the password a same-origin post is 401.
	req, err := http.NewRequest(http.MethodPost, retryURL, nil)
	is.NoErr(err)
	req.Header.Set("Origin", base)
	resp, _ = do(t, req)
	is.Equal(resp.StatusCode, http.StatusUnauthorized)

	resp, body := post(map[string]string{"Origin": base}) // the UI's own page
	is.Equal(resp.StatusCode, http.StatusOK)
	is.True(strings.Contains(body, `"status": "ok"`))
	_, count, err = client.DeadJobs(1)
	is.NoErr(err)
	is.Equal(count, int64(0)) // the dead job went back to its queue
}

func TestSameOriginEvidence(t *testing.T) {
	for _, tc := range []struct {
		name    string
		method  string
		headers map[string]string
		ok      bool
	}{
		{"a GET needs nothing", http.MethodGet, nil, true},
		{"HEAD", http.MethodHead, map[string]string{"Origin": "https://evil.example"}, true},
		{"Sec-Fetch-Site same-origin", http.MethodPost, map[string]string{"Sec-Fetch-Site": "same-origin"}, true},
		{"Sec-Fetch-Site none", http.MethodPost, map[string]string{"Sec-Fetch-Site": "none"}, false},
		{"own Origin", http.MethodDelete, map[string]string{"Origin": "http://ui.internal:5040"}, true},
		{"own Origin behind TLS", http.MethodPut, map[string]string{"Origin": "https://UI.internal:5040"}, true},
		{"other port", http.MethodPost, map[string]string{"Origin": "http://ui.internal:5041"}, false},
		{"own Referer", http.MethodPatch, map[string]string{"Referer": "http://ui.internal:5040/#/dead_jobs"}, true},
		{"javascript Referer", http.MethodPost, map[string]string{"Referer": "javascript:ui.internal:5040"}, false},
		{"nothing", http.MethodPost, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "http://ui.internal:5040/retry_all_dead_jobs", nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			err = checkSameOrigin(req)
			if (err == nil) != tc.ok {
				t.Fatalf("checkSameOrigin = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// (A public address without a password is refused by config.Load, before
// anything starts: config's TestWebUIOnPublicAddressNeedsPassword.)

// Issue 13 item 9: DNS rebinding. A page of attacker.example whose name
// resolves to the UI's address is same-origin with itself: its requests
// carry Host and Origin attacker.example. Only loopback names and the
// configured hosts are served.
func TestAForeignHostIsRefused(t *testing.T) {
	pool, ns := testRedis(t)
	base := startUI(t, testPassword, ns, pool, "jobs.example.com")
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	for _, tc := range []struct {
		host   string
		method string
		want   int
	}{
		{"attacker.example:" + port, http.MethodPost, http.StatusForbidden},
		{"attacker.example", http.MethodGet, http.StatusForbidden},
		{"10.0.0.7:" + port, http.MethodGet, http.StatusForbidden},
		{"localhost:" + port, http.MethodGet, http.StatusOK},
		{"127.0.0.1:" + port, http.MethodGet, http.StatusOK},
		{"[::1]:" + port, http.MethodGet, http.StatusOK},
		{"jobs.example.com", http.MethodGet, http.StatusOK},
		{"JOBS.example.com:" + port, http.MethodGet, http.StatusOK},
	} {
		t.Run(tc.method+" "+tc.host, func(t *testing.T) {
			is := is.New(t)
			path := "/queues"
			if tc.method == http.MethodPost {
				path = "/retry_all_dead_jobs"
			}
			req, err := http.NewRequest(tc.method, base+path, nil)
			is.NoErr(err)
			req.Host = tc.host
			req.Header.Set("Origin", "http://"+tc.host)
			req.SetBasicAuth("ops", testPassword)
			resp, body := do(t, req)
			is.Equal(resp.StatusCode, tc.want)
			if tc.want == http.StatusForbidden {
				is.True(strings.Contains(body, "THUMBNAILED_WEBUI_HOSTS"))
			}
		})
	}
}

func TestRunServesUntilCancelled(t *testing.T) {
	is := is.New(t)
	pool, ns := testRedis(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	is.NoErr(err)
	addr := ln.Addr().String()
	is.NoErr(ln.Close())

	var logs testlog.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, log, Config{Addr: addr, Password: testPassword}, ns, pool) }()

	var resp *http.Response
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/queues", nil)
		is.NoErr(err)
		req.SetBasicAuth("ops", "not-it")
		resp, err = http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	is.Equal(resp.StatusCode, http.StatusUnauthorized)
	resp, _ = get(t, "http://"+addr+"/queues", "ops", testPassword)
	is.Equal(resp.StatusCode, http.StatusOK)

	cancel()
	select {
	case err := <-done:
		is.NoErr(err) // a clean stop
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return within 15s of cancellation")
	}
	_, err = net.DialTimeout("tcp", addr, time.Second)
	is.True(err != nil) // nothing listens any more

	out := logs.String()
	is.True(strings.Contains(out, `"msg":"web UI login refused"`)) // refusals are logged
	is.True(!strings.Contains(out, testPassword))                  // the password never is
	is.True(!strings.Contains(out, "not-it"))                      // nor a wrong one
}
