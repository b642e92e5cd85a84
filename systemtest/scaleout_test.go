package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
)

// jobID is the id of the job an answer carries, "" when it carries none.
// (Response.Job fails the test, which only the test's goroutine may do.)
func jobID(r testapi.Response) string {
	var j testapi.Job
	if json.Unmarshal(r.Body, &j) != nil {
		return ""
	}
	return j.ID
}

// Issue 7.6: one api and three worker processes on one Redis run 300 jobs,
// each exactly once, and every callback arrives exactly once.
func TestScaleOutRunsEachJobOnce(t *testing.T) {
	is := is.New(t)
	env := newEnv(t, "THUMBNAILED_WORKER_CONCURRENCY", "2")
	rcv := testapi.NewReceiver(t, webhookSecret)
	api := startProcess(t, "api", "api", env)
	workers := []*process{
		startProcess(t, "worker-1", "worker", env),
		startProcess(t, "worker-2", "worker", env),
		startProcess(t, "worker-3", "worker", env),
	}

	const n = 300
	image := readTestdata(t, "go-video-001.jpeg")
	fields := map[string]string{"width": "32", "callback_url": rcv.URL + "/hook"}
	client := api.API()
	start := time.Now()
	var mu sync.Mutex
	var ids []string
	var submitErrs []string
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for range next {
				resp, err := client.TryUpload(context.Background(), image, fields, nil)
				id := jobID(resp)
				mu.Lock()
				if err != nil || resp.Status != http.StatusAccepted || id == "" {
					submitErrs = append(submitErrs, fmt.Sprintf("%d %v %s", resp.Status, err, resp.Body))
				} else {
					ids = append(ids, id)
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
	for _, e := range submitErrs {
		t.Logf("refused: %s", e)
	}
	is.Equal(len(submitErrs), 0) // every upload is accepted
	is.Equal(len(ids), n)

	is.True(rcv.WaitEach(ids, 60*time.Second)) // every callback arrived
	wall := rcv.LastFirst(ids).Sub(start)
	waitDelivered(t, api, ids, 20*time.Second) // and no attempt is left to send one more
	tally := expectEachOnce(t, rcv, ids)
	is.Equal(rcv.Distinct(), n)     // 300 distinct webhook-ids
	is.Equal(tally.Duplicates(), 0) // each received once

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

	all, pollErrors, _ := api.API().EndAll(ids, 10*time.Second)
	is.Equal(pollErrors, 0)
	for _, id := range ids {
		if all[id].Status != "succeeded" {
			t.Errorf("job %s is %s", id, all[id].Status)
		}
	}
}
