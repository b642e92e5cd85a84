package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// The operations thumbload makes, as they appear in the answer counts.
const (
	opSubmit = "POST"      // POST /v1/thumbnails
	opGet    = "GET job"   // GET /v1/thumbnails/{id}
	opImage  = "GET image" // GET /v1/thumbnails/{id}/image
)

// answer is one request and what came back.
type answer struct {
	op         string
	source     string // the client address it went out from ("" = the system's choice)
	start      time.Time
	took       time.Duration // from sending the request to the last byte of the answer
	status     int           // 0: no answer (err says why)
	retryAfter bool
	code       string // the problem+json code, if any
	err        string
}

// acceptable reports an answer the service's contract allows under load and
// faults: a success, a "not now" with Retry-After (503 storage unavailable
// or uploads busy, 429, 409 image not ready), or a 4xx about the request.
// Not acceptable: no answer at all, a 5xx that is not a 503 with
// Retry-After, a 503 or 429 without one, and a 404 (every job thumbload asks
// about was accepted, so a 404 is a lost job).
func (a answer) acceptable() bool {
	switch {
	case a.status == 0 || a.err != "":
		return false
	case a.status == http.StatusServiceUnavailable, a.status == http.StatusTooManyRequests:
		return a.retryAfter
	case a.status == http.StatusNotFound:
		return false
	case a.status >= 500:
		return false
	}
	return true
}

// answerLog keeps every answer of a run; a nil log keeps nothing.
type answerLog struct {
	mu   sync.Mutex
	list []answer
}

func (l *answerLog) add(a answer) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.list = append(l.list, a)
	l.mu.Unlock()
}

func (l *answerLog) all() []answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.list)
}

// answerCount is how many answers of one kind came back in one phase of
// the run, and how long they took.
type answerCount struct {
	Phase      string     `json:"phase,omitempty"`
	Op         string     `json:"op"`
	Status     int        `json:"status"` // 0: no answer
	Code       string     `json:"code,omitempty"`
	RetryAfter bool       `json:"retry_after"`
	Count      int        `json:"count"`
	Time       *latencies `json:"ms"`
	Sample     string     `json:"sample_error,omitempty"` // for answers that did not arrive
}

func (a answerCount) label() string {
	s := a.Op + " "
	if a.Status == 0 {
		s += "no answer"
	} else {
		s += fmt.Sprint(a.Status)
	}
	if a.Code != "" {
		s += " " + a.Code
	}
	if a.RetryAfter {
		s += " +Retry-After"
	}
	return s
}

// countAnswers groups answers by phase (phaseOf's answer; phases in the
// order given), operation, status, code and Retry-After.
func countAnswers(list []answer, phases []string, phaseOf func(answer) string) []answerCount {
	type key struct {
		phase, op  string
		status     int
		code       string
		retryAfter bool
	}
	times := map[key][]time.Duration{}
	samples := map[key]string{}
	for _, a := range list {
		k := key{phaseOf(a), a.op, a.status, a.code, a.retryAfter}
		times[k] = append(times[k], a.took)
		if a.err != "" && samples[k] == "" {
			samples[k] = a.err
		}
	}
	rank := func(p string) int {
		if i := slices.Index(phases, p); i >= 0 {
			return i
		}
		return len(phases)
	}
	keys := make([]key, 0, len(times))
	for k := range times {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if rank(a.phase) != rank(b.phase) {
			return rank(a.phase) < rank(b.phase)
		}
		if a.op != b.op {
			return a.op > b.op // POST, GET job, GET image
		}
		if a.status != b.status {
			return a.status < b.status
		}
		if a.code != b.code {
			return a.code < b.code
		}
		return !a.retryAfter && b.retryAfter
	})
	out := make([]answerCount, 0, len(keys))
	for _, k := range keys {
		out = append(out, answerCount{Phase: k.phase, Op: k.op, Status: k.status, Code: k.code, RetryAfter: k.retryAfter,
			Count: len(times[k]), Time: summarise(times[k]), Sample: samples[k]})
	}
	return out
}

// bySource counts answers per source address and status ("no answer" for
// none): how the load was spread over -from.
func bySource(list []answer, op string) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, a := range list {
		if a.op != op || a.source == "" {
			continue
		}
		m := out[a.source]
		if m == nil {
			m = map[string]int{}
			out[a.source] = m
		}
		st := "no answer"
		if a.status != 0 {
			st = fmt.Sprint(a.status)
		}
		m[st]++
	}
	return out
}

func printAnswers(w io.Writer, counts []answerCount) {
	phase := "\x00"
	for _, c := range counts {
		if c.Phase != phase {
			phase = c.Phase
			if phase != "" {
				fmt.Fprintf(w, "answers, %s:\n", phase)
			} else {
				fmt.Fprintln(w, "answers:")
			}
		}
		fmt.Fprintf(w, "  %-48s x%-5d %s\n", c.label(), c.Count, c.Time)
		if c.Sample != "" {
			fmt.Fprintf(w, "    e.g. %s\n", c.Sample)
		}
	}
}

func printBySource(w io.Writer, m map[string]map[string]int) {
	sources := make([]string, 0, len(m))
	for s := range m {
		sources = append(sources, s)
	}
	sort.Strings(sources)
	for _, s := range sources {
		var parts []string
		for _, st := range sortedKeys(m[s]) {
			parts = append(parts, fmt.Sprintf("%s x%d", st, m[s][st]))
		}
		fmt.Fprintf(w, "  submits from %s: %s\n", s, strings.Join(parts, ", "))
	}
}
