package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testredis"
)

func TestEveryRoleRefusesARedisThatEvictsKeys(t *testing.T) {
	// Issue 12, item 4: with allkeys-lru, 24 of 30 accepted jobs vanished.
	// Every role checks maxmemory-policy at start and refuses another one
	// than noeviction, saying why.
	srv := testredis.StartServer(t, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
	env := map[string]string{
		"THUMBNAILED_REDIS_URL":   srv.URL,
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
	c := srv.Conn(t)
	_, err := c.Do("CONFIG", "SET", "maxmemory-policy", "noeviction")
	c.Close()
	is.NoErr(err)
	svc := startService(t, "api", env)
	is.Equal(svc.Do(t, http.MethodGet, "/readyz", nil, nil).Status, http.StatusOK)
}
