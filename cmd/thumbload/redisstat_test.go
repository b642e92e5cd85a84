package main

import (
	"crypto/rand"
	"strings"
	"testing"

	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testredis"
)

func TestShapeOfHidesWhatDiffersFromJobToJob(t *testing.T) {
	is := is.New(t)
	id := strings.ToLower(rand.Text())
	is.Equal(shapeOf("thumbnailed:record:"+id), "thumbnailed:record:{id}")
	is.Equal(shapeOf("thumbnailed:blob:"+id), "thumbnailed:blob:{id}")
	is.Equal(shapeOf("thumbnailed:client:ip:127.0.0.2"), "thumbnailed:client:ip:{n}")
	is.Equal(shapeOf("thumbnailed:idempotency:ip:127.0.0.1:"+id), "thumbnailed:idempotency:ip:{n}:{id}")
	is.Equal(shapeOf("thumbnailed:ratelimit:0123456789abcdef01234567"), "thumbnailed:ratelimit:{hex}")
	is.Equal(shapeOf("thumbnailed:worker_pools:3fa2b9c8d1e0f4a5b6c7d8e9"), "thumbnailed:worker_pools:{hex}")
	is.Equal(shapeOf("thumbnailed:jobs:thumbnail:inprogress"), "thumbnailed:jobs:thumbnail:inprogress")
	is.Equal(shapeOf("thumbnailed:expiry"), "thumbnailed:expiry")
}

func TestParseInfoMemory(t *testing.T) {
	is := is.New(t)
	m, err := parseInfoMemory("# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nused_memory_peak:2097152\r\n" +
		"used_memory_dataset:4096\r\nmem_clients_normal:22272\r\n")
	is.NoErr(err)
	is.Equal(m, redisMemory{UsedMemory: 1 << 20, UsedMemoryPeak: 2 << 20, Dataset: 4096, Clients: 22272})
	_, err = parseInfoMemory("# Memory\r\nused_memory_human:1.00M\r\n")
	is.True(err != nil)
}

// cleanRedis deletes the keys matching each pattern when t ends: a real
// Redis may be shared with other tests.
func cleanRedis(t *testing.T, r *testredis.Redis, patterns ...string) {
	t.Cleanup(func() {
		conn := r.Pool.Get()
		defer conn.Close()
		for _, p := range patterns {
			keys, err := redis.Strings(conn.Do("KEYS", p))
			if err != nil {
				t.Errorf("clean up %s: %v", p, err)
			}
			for _, k := range keys {
				_, _ = conn.Do("DEL", k)
			}
		}
	})
}

func TestCensusGroupsKeysByShapeAndCountsMembers(t *testing.T) {
	is := is.New(t)
	r := testredis.New(t)
	ns := r.Namespace
	cleanRedis(t, r, ns+":*", ns+"-other:*")
	conn := r.Pool.Get()
	defer conn.Close()
	for range 3 {
		id := strings.ToLower(rand.Text())
		_, err := conn.Do("HSET", ns+":record:"+id, "status", "succeeded", "request", "{}")
		is.NoErr(err)
		_, err = conn.Do("ZADD", ns+":expiry", 1, id)
		is.NoErr(err)
	}
	_, err := conn.Do("SET", ns+"-other:record:"+strings.ToLower(rand.Text()), "x") // another namespace
	is.NoErr(err)

	got, err := takeCensus(conn, ns+":*")
	is.NoErr(err)
	is.Equal(len(got), 2)
	is.Equal([4]any{got[0].Shape, got[0].Type, got[0].Keys, got[0].Members}, [4]any{ns + ":expiry", "zset", int64(1), int64(3)})
	is.Equal([4]any{got[1].Shape, got[1].Type, got[1].Keys, got[1].Members}, [4]any{ns + ":record:{id}", "hash", int64(3), int64(6)})
	if testredis.Real() {
		is.True(got[1].Bytes > 0) // MEMORY USAGE; miniredis has none
	}
}

func TestRedisReportsMemoryAndKeysPerJob(t *testing.T) {
	if !testredis.Real() {
		t.Skip("INFO memory needs a real Redis: set " + testredis.EnvURL)
	}
	is := is.New(t)
	r := testredis.New(t)
	cleanRedis(t, r, r.Namespace+":*")
	f := startFake(t)
	// Each job the fake makes keeps a record in Redis, as the service's do.
	f.created = func(string) {
		conn := r.Pool.Get()
		defer conn.Close()
		_, err := conn.Do("HSET", r.Namespace+":record:"+strings.ToLower(rand.Text()), "job", strings.Repeat("x", 500))
		if err != nil {
			t.Error(err)
		}
	}

	stdout, err := f.load("-n", "5", "-c", "2", "-images", images(t, "a.jpg"), "-timeout", "10s", "-json", "-wait", "poll",
		"-redis", r.URL, "-namespace", r.Namespace, "-settle", "10ms")

	is.NoErr(err)
	s := lastJSON(t, stdout)
	rep := s.Redis
	is.True(rep != nil)
	is.Equal(rep.Jobs, 5)
	is.Equal(len(rep.Before.Census), 0)
	is.Equal(len(rep.After.Census), 1)
	rec := rep.After.Census[0]
	is.Equal([3]any{rec.Shape, rec.Keys, rec.Members}, [3]any{r.Namespace + ":record:{id}", int64(5), int64(5)})
	is.True(rec.Bytes > 5*500)
	is.True(rep.Before.UsedMemory > 0 && rep.After.UsedMemoryPeak > 0 && rep.Samples > 0)
	is.True(rep.PeakSampledUsed >= rep.After.UsedMemory)
	// The delta per job is reported; on a shared Redis other clients move it,
	// so only its presence is checked.
	is.True(strings.Contains(stdout, "redis per accepted job (5 jobs): used_memory "))
	is.True(strings.Contains(stdout, r.Namespace+":record:{id}"))
}
