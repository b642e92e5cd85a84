package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/testnet"
)

// privateRedis starts a redis-server of the test's own on a free port, with
// args, stopped when the test ends. It skips the test when redis-server is
// not installed (fails it when CI is set).
func privateRedis(t *testing.T, args ...string) (url string, conn func() redis.Conn) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed")
		}
		t.Skip("redis-server is not installed")
	}
	addr := testnet.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir()}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url = "redis://" + addr
	conn = func() redis.Conn {
		c, err := redis.DialURL(url, redis.DialConnectTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if !testapi.Eventually(10*time.Second, func() bool {
		c, err := redis.DialURL(url, redis.DialConnectTimeout(time.Second))
		if err != nil {
			return false
		}
		defer c.Close()
		_, err = c.Do("PING")
		return err == nil
	}) {
		t.Fatalf("redis-server did not answer within 10 s:\n%s", out.String())
	}
	return url, conn
}

func TestEveryRoleRefusesARedisThatEvictsKeys(t *testing.T) {
	// Issue 12, item 4: with allkeys-lru, 24 of 30 accepted jobs vanished.
	// Every role checks maxmemory-policy at start and refuses another one
	// than noeviction, saying why.
	url, conn := privateRedis(t, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
	env := map[string]string{
		"THUMBNAILED_REDIS_URL":   url,
		"THUMBNAILED_LINK_SECRET": "evict-test-link-secret-0123",
		"THUMBNAILED_NAMESPACE":   "evict-test",
	}
	for _, role := range []string{"all", "api", "worker", "webui"} {
		t.Run(role, func(t *testing.T) {
			is := is.New(t)
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			err := run(ctx, []string{"thumbnailed", role}, environ(testEnv(t, env)), &out, &out)
			if err == nil {
				t.Fatalf("%s started on an evicting Redis (and stopped after 20 s):\n%s", role, out.String())
			}
			t.Logf("%s: %v (after %s)", role, err, time.Since(start).Round(time.Millisecond))
			is.True(strings.Contains(err.Error(), "maxmemory-policy"))
			is.True(strings.Contains(err.Error(), "allkeys-lru"))
			is.True(strings.Contains(err.Error(), "noeviction")) // says what it must be
			is.True(time.Since(start) < 10*time.Second)          // at once, not after serving
			is.True(!strings.Contains(out.String(), `"listening"`))
		})
	}

	// The control: the same Redis with noeviction is taken.
	is := is.New(t)
	c := conn()
	_, err := c.Do("CONFIG", "SET", "maxmemory-policy", "noeviction")
	c.Close()
	is.NoErr(err)
	svc := startService(t, "api", env)
	is.Equal(svc.Do(t, http.MethodGet, "/readyz", nil, nil).Status, http.StatusOK)
}
