package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"time"
)

// prepared is a request body built once and sent many times.
type prepared struct {
	contentType string
	body        []byte
}

// accepted is a job the service answered 202 for.
type accepted struct {
	id string
	at time.Time // when its submit started
}

// runLoad submits o.n jobs, o.c at a time, cycling through sources, then
// waits (-wait) up to o.timeout for their callbacks or for their records
// to say they ended, and reads every job back.
func runLoad(ctx context.Context, o options, c *client, rc *receiver, sources []source) (*summary, error) {
	bodies, err := c.bodies(sources)
	if err != nil {
		return nil, err
	}
	s := newSummary("load")
	s.Sources, s.Concurrency = len(sources), o.c
	watch, err := startRedisWatch(o)
	if err != nil {
		return nil, err
	}
	sampler := startRSS(o.pids)
	meter := startCPU(o.pids)

	var (
		mu        sync.Mutex
		jobs      []accepted
		lastReply time.Time
	)
	next := make(chan int)
	var wg sync.WaitGroup
	for range o.c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p := bodies[i%len(bodies)]
				at := time.Now()
				id, err := c.submit(ctx, p.contentType, p.body)
				mu.Lock()
				s.Submitted++
				lastReply = time.Now()
				if err != nil {
					s.submitFailed(err)
				} else {
					jobs = append(jobs, accepted{id, at})
				}
				mu.Unlock()
			}
		}()
	}
	first := time.Now()
	feedIndexes(ctx, next, o.n)
	wg.Wait()
	s.SubmitSeconds = seconds(lastReply.Sub(first))
	s.Accepted = len(jobs)

	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.id
	}
	deadline := time.Now().Add(o.timeout)
	switch o.wait {
	case waitCallback:
		rc.waitFor(ctx, ids, deadline)
	case waitNone:
		s.RSS = sampler.finish()
		s.CPU = meter.finish(0)
		s.Seconds = s.SubmitSeconds
		s.answers(c, nil, nil)
		return s, watch.finish(ctx, s, o.settle)
	}
	s.RSS = sampler.finish()
	cpu := meter.finish(0)
	// Every job read back: what its record says, and when it finished.
	s.Jobs = settle(ctx, c, ids, max(min(o.c, 8), 1), deadline)
	if !s.Jobs.LastFinished.IsZero() {
		s.Jobs.LastFinishedSeconds = seconds(s.Jobs.LastFinished.Sub(first))
	}

	if o.wait == waitCallback {
		var lats []time.Duration
		last := first
		for _, j := range jobs {
			cb, ok := rc.get(j.id)
			if !ok {
				s.Missing++
				continue
			}
			last = later(last, cb.at)
			if cb.status == "succeeded" {
				s.Succeeded++
				lats = append(lats, cb.at.Sub(j.at))
			} else {
				s.Failed++
				s.FailedByCode[orUnknown(cb.code)]++
			}
		}
		s.Latency = summarise(lats)
		s.Seconds = seconds(last.Sub(first))
		s.receiverCounts(rc)
	} else {
		s.Succeeded, s.Failed = s.Jobs.ByStatus["succeeded"], s.Jobs.ByStatus["failed"]
		s.Seconds = s.Jobs.LastFinishedSeconds
	}
	if s.Seconds > 0 {
		s.JobsPerSecond = math.Round(float64(s.Succeeded)/s.Seconds*1000) / 1000
	}
	if s.Succeeded > 0 {
		cpu.MachineBusyPerJobMS = float64(int64(cpu.MachineBusySeconds*1e4/float64(s.Succeeded))) / 10
	}
	s.CPU = cpu
	s.answers(c, nil, nil)
	if err := watch.finish(ctx, s, o.settle); err != nil {
		return s, err
	}
	return s, ctx.Err()
}

// runIdle measures pickup after idle: o.repeat times, it sleeps o.idle,
// submits src, and times submit→succeeded by the callback and by polling
// GET status every o.poll.
func runIdle(ctx context.Context, o options, c *client, rc *receiver, src source, progress io.Writer) (*summary, error) {
	ct, body, err := c.body(src)
	if err != nil {
		return nil, err
	}
	s := newSummary("idle")
	s.Sources = 1
	idle := &idleReport{IdleSeconds: o.idle.Seconds(), Repeats: o.repeat, PollIntervalMS: ms(o.poll)}
	s.Idle = idle
	sampler := startRSS(o.pids)

	var viaCallback, viaPoll, pickup []time.Duration
	for r := range o.repeat {
		fmt.Fprintf(progress, "thumbload: idle %s before submission %d of %d\n", o.idle, r+1, o.repeat)
		if !sleep(ctx, o.idle) {
			break
		}
		at := time.Now()
		id, err := c.submit(ctx, ct, body)
		s.Submitted++
		if err != nil {
			s.submitFailed(err)
			continue
		}
		s.Accepted++
		deadline := at.Add(o.timeout)

		job, polledAt, limited, err := pollUntilEnded(ctx, c, id, o.poll, deadline)
		idle.RateLimitedPolls += limited
		if err != nil {
			fmt.Fprintf(progress, "thumbload: polling job %s: %v\n", id, err)
		} else if job.Status == "succeeded" {
			viaPoll = append(viaPoll, polledAt.Sub(at))
			if job.StartedAt != nil {
				pickup = append(pickup, job.StartedAt.Sub(job.CreatedAt))
			}
		}

		rc.waitFor(ctx, []string{id}, deadline)
		cb, ok := rc.get(id)
		switch {
		case !ok:
			s.Missing++
		case cb.status == "succeeded":
			s.Succeeded++
			viaCallback = append(viaCallback, cb.at.Sub(at))
		default:
			s.Failed++
			s.FailedByCode[orUnknown(cb.code)]++
		}
		if ok {
			fmt.Fprintf(progress, "thumbload: job %s %s: callback %.1f ms, poll %.1f ms\n", id, cb.status, ms(cb.at.Sub(at)), ms(polledAt.Sub(at)))
		}
	}
	s.RSS = sampler.finish()
	s.Latency = summarise(viaCallback)
	idle.Poll = summarise(viaPoll)
	idle.Pickup = summarise(pickup)
	idle.CallbackMS, idle.PollMS, idle.PickupMS = msList(viaCallback), msList(viaPoll), msList(pickup)
	s.receiverCounts(rc)
	s.answers(c, nil, nil)
	return s, ctx.Err()
}

// pollUntilEnded GETs the job every interval until it has succeeded or
// failed, returning it and when the answer saying so arrived. 429 answers
// are counted and polling goes on.
func pollUntilEnded(ctx context.Context, c *client, id string, interval time.Duration, deadline time.Time) (jobStatus, time.Time, int, error) {
	limited := 0
	for {
		job, ans, err := c.status(ctx, id)
		now := time.Now()
		if err == nil && ans.status != http.StatusOK && ans.status != http.StatusTooManyRequests {
			err = fmt.Errorf("GET status answered %d: %s", ans.status, problemDetail(ans.body))
		}
		if err != nil {
			return job, now, limited, err
		}
		if ans.status == http.StatusTooManyRequests {
			limited++
		} else if job.ended() {
			return job, now, limited, nil
		}
		if now.After(deadline) {
			return job, now, limited, fmt.Errorf("still %q after -timeout", job.Status)
		}
		if !sleep(ctx, interval) {
			return job, now, limited, ctx.Err()
		}
	}
}

// sleep waits d unless ctx ends first; it reports whether it slept fully.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func seconds(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond)) / float64(time.Second)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func orUnknown(code string) string {
	if code == "" {
		return "unknown"
	}
	return code
}

// feedIndexes sends 0..n-1 on next, until ctx is done, and closes it.
func feedIndexes(ctx context.Context, next chan<- int, n int) {
	defer close(next)
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			return
		}
	}
}
