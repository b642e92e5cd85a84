package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The phases of a stall run, in order: traffic before the stop, during
// it, after the SIGCONT, and the jobs read back once the traffic ended.
const (
	phaseBefore = "before the stop"
	phaseStall  = "during the stall"
	phaseAfter  = "after SIGCONT"
	phaseSettle = "reading the jobs back"
)

// stallOps is what each traffic goroutine does in turn: an upload, a
// status, an image (of a job known to have succeeded; a status until there
// is one), a status.
var stallOps = []string{opSubmit, opGet, opImage, opGet}

// stallReport is what -stall-pid measured.
type stallReport struct {
	PID          int       `json:"pid"`
	StoppedAt    time.Time `json:"stopped_at"`
	ContinuedAt  time.Time `json:"continued_at"`
	StallSeconds float64   `json:"stall_seconds"`
	LimitMS      float64   `json:"limit_ms"` // -stall-max: the longest answer the contract allows
	// The answers to requests sent while the process was stopped.
	During    *latencies     `json:"during_ms"`
	DuringBy  map[string]int `json:"during_by_status"`
	OverLimit int            `json:"during_over_limit"`
	InFlight  *latencies     `json:"in_flight_at_stop_ms,omitempty"` // sent before the stop, answered after it
	// StopSeenMS is how long after the SIGSTOP /proc said the process was
	// stopped (state T); StoppedAt is that moment.
	StopSeenMS float64 `json:"stop_seen_ms"`
	// SuccessesDuring lists the 2xx answers to requests sent during the
	// stall: operation, start (ms after the stop) and answer time.
	SuccessesDuring []string       `json:"successes_during,omitempty"`
	Accepted        int            `json:"accepted"` // 202s in the whole run
	AcceptedBy      map[string]int `json:"accepted_by_phase"`
	// LastFinishedAfterCont is the latest finished_at of the accepted jobs
	// less the SIGCONT; CaughtUpAfterCont the same for the jobs accepted
	// before the SIGCONT: how long the service took to finish what it had
	// promised before and during the stall.
	LastFinishedAfterCont float64 `json:"last_finished_after_cont_s"`
	CaughtUpAfterCont     float64 `json:"promised_before_cont_finished_after_cont_s"`
	// Unpromised are jobs the client's list shows that no 202 named (a submit
	// answered 503 or cut off whose job was created all the same), with
	// their statuses read back.
	Unpromised       int            `json:"unpromised_jobs"`
	UnpromisedStatus map[string]int `json:"unpromised_by_status,omitempty"`
	ListError        string         `json:"list_error,omitempty"`
}

// runStall keeps traffic going (o.c goroutines, each pausing o.pause
// between requests) for o.around, stops the process o.stallPID (Redis)
// with SIGSTOP for o.stall, continues it, keeps the traffic going for
// o.around more, then reads back every accepted job until it has settled
// (or o.timeout).
func runStall(ctx context.Context, o options, c *client, rc *receiver, sources []source) (*summary, error) {
	bodies, err := c.bodies(sources)
	if err != nil {
		return nil, err
	}
	s := newSummary("stall")
	s.Sources, s.Concurrency = len(sources), o.c
	st := &stallReport{PID: o.stallPID, LimitMS: ms(o.stallMax)}
	s.Stall = st
	sampler := startRSS(o.pids)

	var (
		mu        sync.Mutex
		jobs      []accepted
		succeeded []string // jobs a GET said had succeeded: their images can be asked for
		seen      = map[string]bool{}
	)
	first := time.Now()
	trafficEnd := first.Add(2*o.around + o.stall)
	tctx, stopTraffic := context.WithDeadline(ctx, trafficEnd)
	defer stopTraffic()

	var wg sync.WaitGroup
	for g := range o.c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; tctx.Err() == nil; i++ {
				switch op := stallOps[(g+i)%len(stallOps)]; op {
				case opSubmit:
					p := bodies[(g+i)%len(bodies)]
					at := time.Now()
					id, err := c.submit(ctx, p.contentType, p.body)
					mu.Lock()
					s.Submitted++
					if err != nil {
						s.submitFailed(err)
					} else {
						jobs = append(jobs, accepted{id, at})
					}
					mu.Unlock()
				default:
					mu.Lock()
					var id string
					image := op == opImage && len(succeeded) > 0
					switch {
					case image:
						id = succeeded[rand.IntN(len(succeeded))]
					case len(jobs) > 0:
						id = jobs[rand.IntN(len(jobs))].id
					}
					mu.Unlock()
					if id == "" {
						break
					}
					if image {
						_, _ = c.image(ctx, id)
						break
					}
					job, ans, err := c.status(ctx, id)
					if err == nil && ans.status == http.StatusOK && job.Status == "succeeded" {
						mu.Lock()
						if !seen[id] {
							seen[id] = true
							succeeded = append(succeeded, id)
						}
						mu.Unlock()
					}
				}
				sleep(tctx, o.pause)
			}
		}()
	}

	// The stall itself; the process is continued whatever happens.
	stopped := false
	cont := func() {
		if stopped {
			// The moment before the signal: a request sent after it may
			// find the process running again.
			at := time.Now()
			if err := syscall.Kill(o.stallPID, syscall.SIGCONT); err == nil {
				st.ContinuedAt = at
			}
			stopped = false
		}
	}
	defer cont()
	var stallErr error
	if sleep(ctx, o.around) {
		sent := time.Now()
		if err := syscall.Kill(o.stallPID, syscall.SIGSTOP); err != nil {
			stallErr = fmt.Errorf("-stall-pid %d: SIGSTOP: %w", o.stallPID, err)
		} else {
			stopped = true
			st.StoppedAt = waitStopped(o.stallPID, time.Second)
			st.StopSeenMS = ms(st.StoppedAt.Sub(sent))
			sleep(ctx, o.stall)
			cont()
		}
	}
	wg.Wait()
	if stallErr != nil {
		return nil, stallErr
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	st.StallSeconds = seconds(st.ContinuedAt.Sub(st.StoppedAt))
	settleStart := time.Now()

	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.id
	}
	s.Accepted = len(jobs)
	s.Jobs = settle(ctx, c, ids, max(min(o.c, 8), 1), time.Now().Add(o.timeout))
	s.RSS = sampler.finish()
	if !s.Jobs.LastFinished.IsZero() {
		s.Jobs.LastFinishedSeconds = seconds(s.Jobs.LastFinished.Sub(first))
		st.LastFinishedAfterCont = seconds(s.Jobs.LastFinished.Sub(st.ContinuedAt))
	}
	s.Succeeded, s.Failed = s.Jobs.ByStatus["succeeded"], s.Jobs.ByStatus["failed"]
	var before []string
	for _, j := range jobs {
		if j.at.Before(st.ContinuedAt) {
			before = append(before, j.id)
		}
	}
	if r := settle(ctx, c, before, 4, time.Now()); !r.LastFinished.IsZero() {
		st.CaughtUpAfterCont = seconds(r.LastFinished.Sub(st.ContinuedAt))
	}
	if o.wait == waitCallback {
		for _, id := range ids {
			cb, ok := rc.get(id)
			switch {
			case !ok:
				s.Missing++
			case cb.status != "succeeded":
				s.FailedByCode[orUnknown(cb.code)]++
			}
		}
		s.receiverCounts(rc)
	} else {
		s.FailedByCode = map[string]int{}
	}

	// Jobs made without a 202: the client's own list, less the accepted ones.
	promised := map[string]bool{}
	for _, id := range ids {
		promised[id] = true
	}
	var unpromised []string
	for i := range c.https {
		listed, err := c.list(ctx, i)
		if err != nil {
			st.ListError = err.Error()
			break
		}
		for _, id := range listed {
			if !promised[id] {
				promised[id] = true // once, if two sources list it
				unpromised = append(unpromised, id)
			}
		}
	}
	st.Unpromised = len(unpromised)
	if len(unpromised) > 0 {
		r := settle(ctx, c, unpromised, 4, time.Now().Add(o.timeout))
		st.UnpromisedStatus = r.ByStatus
	}

	phaseOf := func(a answer) string {
		switch {
		case !a.start.Before(settleStart):
			return phaseSettle
		case a.start.Before(st.StoppedAt):
			return phaseBefore
		case a.start.Before(st.ContinuedAt):
			return phaseStall
		default:
			return phaseAfter
		}
	}
	s.answers(c, []string{phaseBefore, phaseStall, phaseAfter, phaseSettle}, phaseOf)
	st.AcceptedBy = map[string]int{}
	var during, inFlight []time.Duration
	st.DuringBy = map[string]int{}
	for _, a := range c.answers.all() {
		phase := phaseOf(a)
		if a.op == opSubmit && a.status == http.StatusAccepted {
			st.AcceptedBy[phase]++
		}
		switch {
		case phase == phaseStall:
			during = append(during, a.took)
			st.DuringBy[answerCount{Op: a.op, Status: a.status, Code: a.code, RetryAfter: a.retryAfter}.label()]++
			if a.status >= 200 && a.status < 300 {
				st.SuccessesDuring = append(st.SuccessesDuring, fmt.Sprintf("%s %d sent +%.1f ms, answered in %.1f ms",
					a.op, a.status, ms(a.start.Sub(st.StoppedAt)), ms(a.took)))
			}
			if a.took > o.stallMax {
				st.OverLimit++
			}
		case phase == phaseBefore && a.start.Add(a.took).After(st.StoppedAt):
			inFlight = append(inFlight, a.took)
		}
	}
	st.Accepted = s.Accepted
	st.During, st.InFlight = summarise(during), summarise(inFlight)
	s.Seconds = seconds(trafficEnd.Sub(first))
	return s, nil
}

// waitStopped returns when /proc says pid is stopped (state T), or after
// limit, or at once where there is no /proc: the moment the stall began.
func waitStopped(pid int, limit time.Duration) time.Time {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			break
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && strings.HasPrefix(s[i+1:], " T") {
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	return time.Now()
}

func (st *stallReport) print(w io.Writer) {
	fmt.Fprintf(w, "stall: pid %d stopped %s (seen stopped %.1f ms after the SIGSTOP), continued %s (%.3f s)\n", st.PID,
		st.StoppedAt.Format("15:04:05.000"), st.StopSeenMS, st.ContinuedAt.Format("15:04:05.000"), st.StallSeconds)
	fmt.Fprintf(w, "  answers to requests sent during the stall: %s; %d over %s ms\n", st.During, st.OverLimit, num(st.LimitMS))
	for _, k := range sortedKeys(st.DuringBy) {
		fmt.Fprintf(w, "    %-48s x%d\n", k, st.DuringBy[k])
	}
	for _, x := range st.SuccessesDuring {
		fmt.Fprintf(w, "    success: %s\n", x)
	}
	if st.InFlight != nil {
		fmt.Fprintf(w, "  in flight at the stop (sent before, answered after): %s\n", st.InFlight)
	}
	fmt.Fprintf(w, "  accepted (202): %d: %s\n", st.Accepted, countsString(st.AcceptedBy))
	fmt.Fprintf(w, "  the last job accepted before the SIGCONT finished %.3f s after it; the last of all %.3f s after it\n",
		st.CaughtUpAfterCont, st.LastFinishedAfterCont)
	fmt.Fprintf(w, "  jobs listed that no 202 named: %d", st.Unpromised)
	if st.Unpromised > 0 {
		fmt.Fprintf(w, " (%s)", countsString(st.UnpromisedStatus))
	}
	if st.ListError != "" {
		fmt.Fprintf(w, " (list failed: %s)", st.ListError)
	}
	fmt.Fprintln(w)
}

func (st *stallReport) problems() []string {
	var p []string
	if st.OverLimit > 0 {
		p = append(p, fmt.Sprintf("%d answers during the stall took over %s ms", st.OverLimit, num(st.LimitMS)))
	}
	if n := st.Unpromised - st.UnpromisedStatus["succeeded"] - st.UnpromisedStatus["failed"]; n > 0 {
		p = append(p, fmt.Sprintf("%d jobs no 202 named did not end", n))
	}
	if st.ListError != "" {
		p = append(p, "listing the jobs failed: "+st.ListError)
	}
	return slices.Clip(p)
}
