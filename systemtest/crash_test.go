package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/testnet"
)

// submission is what one Idempotency-Key got: the answer while the api
// was being killed, and the answers of its retries after the restart.
type submission struct {
	key    string
	before outcome
	after  []outcome
}

// outcome is one answer to a submit, or the error that stood for one.
type outcome struct {
	status int // 0: no answer
	id     string
	err    error
	body   string // of an answer other than 200 or 202
	// busy: a 503 with Retry-After whose problem says the storage or the
	// upload budget cannot take it now; retry after retryAfter.
	busy       bool
	retryAfter time.Duration
}

func (o outcome) String() string {
	if o.status == 0 {
		return fmt.Sprintf("no answer (%v)", o.err)
	}
	return fmt.Sprintf("%d %s%s", o.status, o.id, o.body)
}

// Issue 12's crash test: concurrent uploads with Idempotency-Keys while
// the api process is SIGKILLed at a random moment, round after round; the
// api is restarted on the same address and every key is retried. After a
// restart no answer is a 5xx (nor missing); every job any 202 or 200 named
// ends (succeeded: every upload is a good photo), within STALE_AFTER plus
// the time to run the round's jobs; a key that was answered 202 keeps naming its job (200);
// an ended job's upload is gone at once; and once the jobs have expired,
// Redis (the blob store here) holds no blob at all, not even the upload of
// a submit the crash cut short.
//
// One 5xx is not a broken promise: a 503 with Retry-After whose problem is
// storage_unavailable or uploads_busy, the contract's "cannot take it now".
// A Redis starved of CPU on a busy machine gives it for a 2 MB upload it
// cannot store within the API's storage deadline, crash or no crash; such
// an answer is counted, logged and retried after its Retry-After.
func TestAPICrashKeepsEveryPromise(t *testing.T) {
	is := is.New(t)
	r, ns, env := redisEnv(t)
	// The TTL is short, so the blobs go soon, yet longer than a round's
	// jobs wait in the queue: a record expires its TTL after it was created
	// while its job has not ended.
	const staleAfter, ttl = 2 * time.Second, 25 * time.Second
	env["THUMBNAILED_STALE_AFTER"] = staleAfter.String()
	env["THUMBNAILED_RESULT_TTL"] = ttl.String()
	env["THUMBNAILED_WORKER_CONCURRENCY"] = "2"
	env["THUMBNAILED_SHUTDOWN_TIMEOUT"] = "5s"
	var photos [][]byte
	for _, name := range []string{"Dragonfly_by_Bolly.jpg", "IMG_9424.JPG"} {
		b, err := os.ReadFile(filepath.Join("..", "thumbnail", "testdata", "photos", name))
		is.NoErr(err)
		photos = append(photos, b)
	}
	apiAddr := testnet.FreeAddr(t)
	startProcess(t, "worker", "worker", env)
	api := startProcess(t, "api-1", "api", env, "THUMBNAILED_ADDR", apiAddr)

	const rounds, perRound = 3, 12
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	t.Logf("seed %d: %d rounds of %d concurrent uploads of %d and %d bytes", seed, rounds, perRound, len(photos[0]), len(photos[1]))

	var all []*submission
	named := map[string]bool{} // every job id a 202 or 200 named
	var maxToEnd time.Duration
	var lastEnd time.Time // of any job
	var counts struct{ accepted, ok, conflict, busy, fiveXX, noAnswer, beforeAccepted, beforeOther, beforeNone, madeDespite5xx int }
	fields := map[string]string{"width": "64"}
	for round := range rounds {
		subs := make([]*submission, perRound)
		for i := range subs {
			subs[i] = &submission{key: fmt.Sprintf("crash-%s-%d-%d", ns, round, i)}
		}
		upload := func(c *testapi.Client, i int) outcome {
			h := http.Header{"Idempotency-Key": {subs[i].key}}
			resp, err := c.TryUpload(context.Background(), photos[i%len(photos)], fields, h)
			o := outcome{status: resp.Status, err: err}
			switch {
			case err != nil:
				o.status = 0
			case resp.Status == http.StatusOK || resp.Status == http.StatusAccepted:
				o.id = jobID(resp)
			default:
				o.body = string(resp.Body)
				secs, aerr := strconv.Atoi(resp.Header.Get("Retry-After"))
				var p testapi.Problem
				_ = json.Unmarshal(resp.Body, &p)
				o.busy = resp.Status == http.StatusServiceUnavailable && aerr == nil && secs > 0 &&
					(p.Code == "storage_unavailable" || p.Code == "uploads_busy")
				o.retryAfter = time.Duration(secs) * time.Second
			}
			return o
		}

		// Upload, and kill the api at a random moment: once a random number
		// of the uploads (0 to all but one) have been answered, plus a
		// random few milliseconds.
		client := testapi.New(api.URL)
		var wg sync.WaitGroup
		answers := make(chan struct{}, perRound)
		start := time.Now()
		for i := range subs {
			wg.Go(func() {
				subs[i].before = upload(client, i)
				answers <- struct{}{}
			})
		}
		after := rng.IntN(perRound)
		jitter := time.Duration(rng.Int64N(int64(50 * time.Millisecond)))
		if after == 0 {
			jitter = time.Duration(rng.Int64N(int64(400 * time.Millisecond)))
		}
		for range after {
			<-answers
		}
		time.Sleep(jitter) // the random moment of the crash: the scenario, not a wait
		api.Signal(syscall.SIGKILL)
		is.True(api.WaitExit(5 * time.Second))
		killedAt := time.Now()
		wg.Wait()
		answered := 0
		for _, s := range subs {
			switch s.before.status {
			case http.StatusAccepted:
				counts.beforeAccepted++
				named[s.before.id] = true
			case 0:
				counts.beforeNone++
			default:
				counts.beforeOther++
			}
			if s.before.status != 0 {
				answered++
			}
		}

		// Restart on the same address and retry every key, one after the
		// other, until it is answered 200 or 202 (a 409 says the key is
		// being created: wait). One at a time: what is measured is the
		// crash, not how many large uploads at once a busy machine's Redis
		// stores within the API's storage deadline (it answers 503 past it).
		api = startProcess(t, fmt.Sprintf("api-%d", round+2), "api", env, "THUMBNAILED_ADDR", apiAddr)
		restartedAt := time.Now()
		client = testapi.New(api.URL)
		for i, s := range subs {
			for range 5 {
				o := upload(client, i)
				s.after = append(s.after, o)
				switch {
				case o.status == http.StatusConflict:
					time.Sleep(time.Second) // the 409's Retry-After
					continue
				case o.busy:
					time.Sleep(o.retryAfter)
					continue
				}
				break
			}
		}
		var ids []string
		for _, s := range subs {
			for _, o := range s.after {
				switch {
				case o.status == 0:
					counts.noAnswer++
					t.Errorf("round %d, key %s: no answer after the restart: %v", round+1, s.key, o.err)
				case o.busy:
					counts.busy++
					t.Logf("round %d, key %s: %s after the restart; retried after its Retry-After", round+1, s.key, o)
				case o.status >= 500:
					counts.fiveXX++
					t.Errorf("round %d, key %s: %s after the restart", round+1, s.key, o)
				case o.status == http.StatusConflict:
					counts.conflict++
				case o.status == http.StatusOK:
					counts.ok++
				case o.status == http.StatusAccepted:
					counts.accepted++
				default:
					t.Errorf("round %d, key %s: %d after the restart", round+1, s.key, o.status)
				}
				if (o.status == http.StatusOK || o.status == http.StatusAccepted) && o.id != "" {
					named[o.id] = true
				}
			}
			last := s.after[len(s.after)-1]
			if last.status == http.StatusOK && (s.before.status >= 500 || slices.ContainsFunc(s.after, func(o outcome) bool { return o.status >= 500 })) {
				counts.madeDespite5xx++ // the submit was written though its answer was a 503
			}
			if last.status != http.StatusOK && last.status != http.StatusAccepted {
				t.Errorf("round %d, key %s: the retries ended %s", round+1, s.key, last)
				continue
			}
			ids = append(ids, last.id)
			if s.before.status == http.StatusAccepted && last.id != s.before.id {
				t.Errorf("round %d, key %s: answered 202 with job %s before the kill, and %s after the restart", round+1, s.key, s.before.id, last)
			}
			if s.before.status == http.StatusAccepted && last.status != http.StatusOK {
				t.Errorf("round %d, key %s: answered 202 before the kill; the retry must answer 200 with that job, not %s", round+1, s.key, last)
			}
		}
		for _, s := range subs {
			if s.before.id != "" && !slices.Contains(ids, s.before.id) {
				ids = append(ids, s.before.id)
			}
		}

		// Every job named ends.
		bound := staleAfter + 30*time.Second
		jobs, _, lastErr := api.API().EndAll(ids, bound)
		var toEnd time.Duration
		ended := 0
		for _, id := range ids {
			j, ok := jobs[id]
			if !ok || !testapi.Ended(j) {
				t.Errorf("round %d: job %s did not end within %s (last seen %q, last error %v); Redis holds:\n%s",
					round+1, id, bound, j.Status, lastErr, describeJob(r, ns, id))
				continue
			}
			ended++
			if j.Status != "succeeded" {
				// Every upload is a good photo: a failure lost something.
				t.Errorf("round %d: job %s failed: %+v; Redis holds:\n%s", round+1, id, j.Error, describeJob(r, ns, id))
			}
			toEnd = max(toEnd, j.FinishedAt.Sub(restartedAt))
			if j.FinishedAt.After(lastEnd) {
				lastEnd = *j.FinishedAt
			}
		}
		maxToEnd = max(maxToEnd, toEnd)
		// An ended job's upload is deleted at once (its images stay until
		// it expires); the worker does so just after recording the end.
		var kept []string
		testapi.Eventually(5*time.Second, func() bool {
			kept = kept[:0]
			for id, fields := range blobs(t, r, ns) {
				if j, ok := jobs[id]; ok && testapi.Ended(j) && slices.Contains(fields, "upload") {
					kept = append(kept, id)
				}
			}
			return len(kept) == 0
		})
		for _, id := range kept {
			t.Errorf("round %d: job %s ended %s and its upload is still stored", round+1, id, jobs[id].Status)
		}
		var afterCodes []string
		for _, s := range subs {
			afterCodes = append(afterCodes, s.after[len(s.after)-1].String()[:3])
		}
		sort.Strings(afterCodes)
		t.Logf("round %d: SIGKILL %s after the %s answer, %s after the uploads began, with %d of %d uploads answered; restarted in %s; retries answered %s; %d jobs ended, the last %s after the restart",
			round+1, jitter.Round(time.Millisecond), ordinal(after), killedAt.Sub(start).Round(time.Millisecond), answered, perRound,
			restartedAt.Sub(killedAt).Round(time.Millisecond), strings.Join(afterCodes, " "), ended, toEnd.Round(10*time.Millisecond))
		all = append(all, subs...)
	}
	t.Logf("%d keys: before the kills %d answered 202, %d otherwise and %d got no answer; after the restarts %d answered 200, %d 202, %d 409, %d 503 busy (retried), %d other 5xx, %d no answer; %d keys answered 503 named a job on a retry; %d jobs named; every job ended within %s of its restart",
		len(all), counts.beforeAccepted, counts.beforeOther, counts.beforeNone, counts.ok, counts.accepted, counts.conflict, counts.busy, counts.fiveXX, counts.noAnswer, counts.madeDespite5xx, len(named), maxToEnd.Round(10*time.Millisecond))
	is.Equal(counts.fiveXX, 0)   // no 5xx after a restart but a 503 that asks to come back
	is.Equal(counts.noAnswer, 0) // and no request unanswered

	// Once the jobs have expired, no blob is left: no upload (of a job, or
	// of a submit the crash cut short), no image.
	expiredAt := lastEnd.Add(ttl) // the last job's record expires
	var left map[string][]string
	gone := testapi.Eventually(time.Until(expiredAt)+3*staleAfter+10*time.Second, func() bool {
		left = blobs(t, r, ns)
		return len(left) == 0
	})
	if !gone {
		for id, fields := range left {
			t.Errorf("blob of job %s left %s after the last job expired: %v (named by an answer: %v); Redis holds:\n%s",
				id, time.Since(expiredAt).Round(time.Second), fields, named[id], describeJob(r, ns, id))
		}
	}
	t.Logf("blobs left once the jobs expired: %d (looked %s after the last job's record expired)", len(left), time.Since(expiredAt).Round(100*time.Millisecond))
}

// ordinal names the n-th answer ("0th" is none).
func ordinal(n int) string {
	if n == 0 {
		return "0th (none)"
	}
	return fmt.Sprintf("#%d", n)
}
