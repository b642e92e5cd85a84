package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// percentile is the nearest-rank percentile (0 < p <= 100) of sorted
// durations: the smallest value at or below which p% of them lie. It
// returns 0 for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// latencies summarises durations in milliseconds.
type latencies struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func summarise(ds []time.Duration) *latencies {
	if len(ds) == 0 {
		return nil
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	return &latencies{
		N:   len(sorted),
		P50: ms(percentile(sorted, 50)),
		P95: ms(percentile(sorted, 95)),
		P99: ms(percentile(sorted, 99)),
		Max: ms(sorted[len(sorted)-1]),
	}
}

func (l *latencies) String() string {
	if l == nil {
		return "no values"
	}
	return fmt.Sprintf("p50 %s  p95 %s  p99 %s  max %s ms (n=%d)",
		num(l.P50), num(l.P95), num(l.P99), num(l.Max), l.N)
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func msList(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = ms(d)
	}
	return out
}

func num(f float64) string { return fmt.Sprintf("%.1f", f) }

// summary is everything one run measured; it prints as lines for people and
// as one JSON object for scripts.
type summary struct {
	Mode    string `json:"mode"` // load or idle
	Service string `json:"service"`
	Width   int    `json:"width"`
	Sources int    `json:"sources"`

	Submitted          int               `json:"submitted"`
	Accepted           int               `json:"accepted"`
	Succeeded          int               `json:"succeeded"`
	Failed             int               `json:"failed"`
	Missing            int               `json:"missing_callbacks"`
	SubmitErrors       map[string]int    `json:"submit_errors,omitempty"` // by HTTP status, or "transport"
	submitErrorSamples map[string]string // one detail per kind, for people
	FailedByCode       map[string]int    `json:"failed_by_code,omitempty"`
	BadSignatures      int               `json:"bad_signatures"`
	DuplicateCallbacks int               `json:"duplicate_callbacks"`
	MalformedCallbacks int               `json:"malformed_callbacks"`
	SignaturesChecked  bool              `json:"signatures_checked"`

	// load mode
	Concurrency   int     `json:"concurrency,omitempty"`
	SubmitSeconds float64 `json:"submit_seconds,omitempty"` // first submit to last answer
	Seconds       float64 `json:"seconds,omitempty"`        // first submit to last callback
	JobsPerSecond float64 `json:"jobs_per_second,omitempty"`

	Latency *latencies `json:"submit_to_callback_ms,omitempty"` // succeeded jobs

	Idle *idleReport `json:"idle,omitempty"`
	RSS  *rssReport  `json:"rss,omitempty"`
	CPU  *cpuReport  `json:"cpu,omitempty"`

	// Every answer the service gave, by phase, operation and status, with
	// its answer time; BadAnswers counts those the contract does not allow
	// (see answer.acceptable).
	Answers    []answerCount             `json:"answers,omitempty"`
	BadAnswers int                       `json:"bad_answers"`
	BySource   map[string]map[string]int `json:"submits_by_source,omitempty"` // -from: each address's submit answers
	Refused    int                       `json:"refused"`                     // submits answered 503 with Retry-After
	Jobs       *jobsReport               `json:"jobs,omitempty"`
	Redis      *redisReport              `json:"redis,omitempty"`
	Stall      *stallReport              `json:"stall,omitempty"`
}

// answers counts the client's answers into s; phaseOf (nil: one phase)
// names the phase of each, phases gives their order.
func (s *summary) answers(c *client, phases []string, phaseOf func(answer) string) {
	if phaseOf == nil {
		phaseOf = func(answer) string { return "" }
	}
	list := c.answers.all()
	s.Answers = countAnswers(list, phases, phaseOf)
	s.BadAnswers = 0
	for _, a := range list {
		if !a.acceptable() {
			s.BadAnswers++
		}
	}
	if len(c.sources) > 1 || c.sources[0] != "" {
		s.BySource = bySource(list, opSubmit)
	}
}

// idleReport is -idle mode's extra: every repeat, and the same submit→succeeded
// seen by polling GET status, and by the job record's own clock.
type idleReport struct {
	IdleSeconds      float64    `json:"idle_seconds"`
	Repeats          int        `json:"repeats"`
	PollIntervalMS   float64    `json:"poll_interval_ms"`
	CallbackMS       []float64  `json:"callback_ms"`
	PollMS           []float64  `json:"poll_ms"`
	PickupMS         []float64  `json:"server_pickup_ms"` // started_at - created_at
	Poll             *latencies `json:"submit_to_succeeded_poll_ms,omitempty"`
	Pickup           *latencies `json:"server_pickup_ms_summary,omitempty"`
	RateLimitedPolls int        `json:"rate_limited_polls"`
}

func newSummary(mode string) *summary {
	return &summary{
		Mode:               mode,
		SubmitErrors:       map[string]int{},
		submitErrorSamples: map[string]string{},
		FailedByCode:       map[string]int{},
	}
}

func (s *summary) submitFailed(err error) {
	kind, detail := "transport", err.Error()
	if se, ok := err.(*submitError); ok {
		kind, detail = se.kind, se.detail
		if se.refused() {
			s.Refused++
		}
	}
	s.SubmitErrors[kind]++
	if _, ok := s.submitErrorSamples[kind]; !ok {
		s.submitErrorSamples[kind] = detail
	}
}

func (s *summary) receiverCounts(rc *receiver) {
	s.BadSignatures, s.DuplicateCallbacks, s.MalformedCallbacks = rc.counts()
	s.SignaturesChecked = rc.secret != ""
}

func (s *summary) print(w io.Writer) {
	fmt.Fprintf(w, "mode %s, service %s, width %d, %d source(s)\n", s.Mode, s.Service, s.Width, s.Sources)
	fmt.Fprintf(w, "submitted %d, accepted %d, succeeded %d, failed %d, missing callbacks %d\n",
		s.Submitted, s.Accepted, s.Succeeded, s.Failed, s.Missing)
	if s.Mode == "get" {
		fmt.Fprintf(w, "concurrency %d; throughput %.2f images/s (%d in %.3f s, first request to last answer)\n",
			s.Concurrency, s.JobsPerSecond, s.Succeeded, s.Seconds)
	}
	if s.Mode == "load" {
		fmt.Fprintf(w, "concurrency %d; submit phase %.3f s (first submit to last answer)\n", s.Concurrency, s.SubmitSeconds)
		if s.Jobs != nil {
			fmt.Fprintf(w, "throughput %.2f jobs/s (%d succeeded in %.3f s, first submit to last callback, or to the last finished_at without callbacks)\n",
				s.JobsPerSecond, s.Succeeded, s.Seconds)
		}
	}
	if s.Jobs != nil {
		fmt.Fprintf(w, "jobs read back (%d): %s; %d not settled (ended, no delivery pending) at -timeout",
			s.Jobs.Checked, countsString(s.Jobs.ByStatus), s.Jobs.Unsettled)
		if s.Jobs.LastFinishedSeconds > 0 {
			fmt.Fprintf(w, "; first submit to the last finished_at %.3f s", s.Jobs.LastFinishedSeconds)
		}
		fmt.Fprintln(w)
	}
	if s.Stall != nil {
		s.Stall.print(w)
	}
	if s.Mode == "stall" {
		// no callback latencies: the jobs are read back instead
	} else if s.Mode == "get" {
		fmt.Fprintf(w, "request->image %s\n", s.Latency)
	} else if s.Idle == nil {
		fmt.Fprintf(w, "submit->callback (succeeded jobs) %s\n", s.Latency)
	} else {
		fmt.Fprintf(w, "idle %g s before each of %d submissions\n", s.Idle.IdleSeconds, s.Idle.Repeats)
		fmt.Fprintf(w, "  submit->succeeded (callback):         %s\n", s.Latency)
		fmt.Fprintf(w, "  submit->succeeded (GET every %s ms): %s\n", num(s.Idle.PollIntervalMS), s.Idle.Poll)
		fmt.Fprintf(w, "  server pickup (started_at-created_at): %s\n", s.Idle.Pickup)
		fmt.Fprintf(w, "  each, callback ms: %v\n", s.Idle.CallbackMS)
		fmt.Fprintf(w, "  each, poll ms:     %v\n", s.Idle.PollMS)
		if s.Idle.RateLimitedPolls > 0 {
			fmt.Fprintf(w, "  WARNING: %d status polls answered 429: raise THUMBNAILED_RATE_LIMIT/BURST, the poll figures are late\n", s.Idle.RateLimitedPolls)
		}
	}
	if s.RSS != nil {
		for _, p := range s.RSS.Processes {
			fmt.Fprintf(w, "rss pid %d: peak %s MiB sampled every 50 ms (%d samples), VmHWM %s MiB (peak since the process started)\n",
				p.PID, num(p.PeakMiB), s.RSS.Samples, num(p.HWMMiB))
		}
		if len(s.RSS.Processes) > 1 {
			fmt.Fprintf(w, "rss all %d processes: peak of the sum %s MiB\n", len(s.RSS.Processes), num(s.RSS.PeakTotalMiB))
		}
	}
	s.CPU.print(w)
	if s.Redis != nil {
		s.Redis.print(w)
	}
	printAnswers(w, s.Answers)
	if len(s.BySource) > 0 {
		printBySource(w, s.BySource)
	}
	if s.BadAnswers > 0 {
		fmt.Fprintf(w, "WARNING: %d answers were none, a 5xx other than 503 with Retry-After, a 503/429 without Retry-After, or a 404\n", s.BadAnswers)
	}
	sig := "not checked (no -secret)"
	if s.SignaturesChecked {
		sig = fmt.Sprintf("checked, %d bad", s.BadSignatures)
	}
	fmt.Fprintf(w, "callback signatures %s; %d duplicate, %d malformed callbacks\n", sig, s.DuplicateCallbacks, s.MalformedCallbacks)
	for _, k := range sortedKeys(s.SubmitErrors) {
		fmt.Fprintf(w, "submit error %s x%d: %s\n", k, s.SubmitErrors[k], s.submitErrorSamples[k])
	}
	for _, k := range sortedKeys(s.FailedByCode) {
		fmt.Fprintf(w, "failed job %s x%d\n", k, s.FailedByCode[k])
	}
}

// problems is a sentence when the run was not clean, else "". A submit
// refused with 503 and Retry-After is the service's overload answer, not a
// problem; it is counted in the report.
func (s *summary) problems() string {
	var p []string
	if n := sumValues(s.SubmitErrors) - s.Refused; n > 0 {
		p = append(p, fmt.Sprintf("%d submits not accepted", n))
	}
	if s.Failed > 0 {
		p = append(p, fmt.Sprintf("%d jobs failed", s.Failed))
	}
	if s.Missing > 0 {
		p = append(p, fmt.Sprintf("%d callbacks missing after -timeout", s.Missing))
	}
	if s.BadSignatures > 0 {
		p = append(p, fmt.Sprintf("%d callbacks with a bad signature", s.BadSignatures))
	}
	if s.MalformedCallbacks > 0 {
		p = append(p, fmt.Sprintf("%d malformed callbacks", s.MalformedCallbacks))
	}
	if s.BadAnswers > 0 {
		p = append(p, fmt.Sprintf("%d answers outside the contract", s.BadAnswers))
	}
	if s.Jobs != nil {
		if n := s.Jobs.ByStatus["lost"]; n > 0 {
			p = append(p, fmt.Sprintf("%d accepted jobs lost (404)", n))
		}
		if s.Jobs.Unsettled > 0 {
			p = append(p, fmt.Sprintf("%d jobs not settled after -timeout", s.Jobs.Unsettled))
		}
	}
	if s.Stall != nil {
		p = append(p, s.Stall.problems()...)
	}
	return strings.Join(p, ", ")
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// countsString is "a x1, b x2" in key order.
func countsString(m map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s x%d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
