package systemtest

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
)

// Issue 7.6: one api and three worker processes on one Redis run 300 jobs,
// each exactly once, and every callback arrives exactly once.
func TestScaleOutRunsEachJobOnce(t *testing.T) {
	is := is.New(t)
	r := startRedis(t)
	env := serviceEnv(t, r, namespace())
	env["THUMBNAILED_WORKER_CONCURRENCY"] = "2"
	rcv := newReceiver(t)
	api := startProcess(t, "api", "api", env)
	workers := []*process{
		startProcess(t, "worker-1", "worker", env),
		startProcess(t, "worker-2", "worker", env),
		startProcess(t, "worker-3", "worker", env),
	}

	const n = 300
	image := readTestdata(t, "go-video-001.jpeg")
	fields := map[string]string{"width": "32", "callback_url": rcv.URL + "/hook"}
	start := time.Now()
	var mu sync.Mutex
	var ids []string
	var submitErrs []string
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for range next {
				code, job, err := submitUpload(api.URL, image, fields)
				mu.Lock()
				if err != nil || code != http.StatusAccepted {
					submitErrs = append(submitErrs, fmt.Sprintf("%d %v", code, err))
				} else {
					ids = append(ids, job.ID)
				}
				mu.Unlock()
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	submitted := time.Since(start)
	is.Equal(len(submitErrs), 0) // every upload is accepted
	is.Equal(len(ids), n)

	is.True(rcv.WaitAll(ids, 60*time.Second)) // every callback arrived
	wall := rcv.LastAt(ids).Sub(start)
	time.Sleep(time.Second) // a duplicate would show now
	problems, duplicates := rcv.Check(ids)
	for _, p := range problems {
		t.Error(p)
	}
	is.Equal(rcv.Distinct(), n) // 300 distinct webhook-ids
	is.Equal(duplicates, 0)     // each received once

	started := map[string]int{}
	var split []string
	total := 0
	for _, w := range workers {
		ids := w.JobIDs("job started")
		total += len(ids)
		split = append(split, fmt.Sprintf("%s=%d", w.Name, len(ids)))
		for _, id := range ids {
			started[id]++
		}
	}
	var twice []string
	for id, k := range started {
		if k != 1 {
			twice = append(twice, fmt.Sprintf("%s x%d", id, k))
		}
	}
	sort.Strings(twice)
	t.Logf("%d jobs: submitted in %s, all callbacks in %s (%.0f jobs/s); split %s",
		n, submitted.Round(time.Millisecond), wall.Round(time.Millisecond), float64(n)/wall.Seconds(), strings.Join(split, " "))
	is.Equal(len(twice), 0) // no job started twice
	is.Equal(total, n)      // "job started" across the workers' logs == 300

	all, pollErrors, _ := waitEnded(api.URL, ids, 10*time.Second)
	is.Equal(pollErrors, 0)
	for _, id := range ids {
		if all[id].Status != "succeeded" {
			t.Errorf("job %s is %s", id, all[id].Status)
		}
	}
}
