package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/matryer/is"
)

func TestFromSpreadsTheSubmitsOverSourceAddresses(t *testing.T) {
	is := is.New(t)
	f, addr := startFake(t, func(string) (string, bool) { return "", false })
	dir := images(t, "a.jpg")

	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"thumbload",
		"-addr", addr, "-key", "test-key-0123456789", "-secret", testSecret,
		"-n", "6", "-c", "2", "-width", "64", "-images", dir, "-timeout", "10s", "-json",
		"-from", "127.0.0.2,127.0.0.3",
	}, &stdout, &stderr)

	is.NoErr(err)
	s := lastJSON(t, stdout.String())
	// Every request went out from one of the two, in turn (the submits and
	// the GETs that read the jobs back share the turn).
	f.mu.Lock()
	is.Equal(len(f.remotes), 2)
	is.True(f.remotes["127.0.0.2"] >= 3 && f.remotes["127.0.0.3"] >= 3)
	f.mu.Unlock()
	is.Equal(len(s.BySource), 2)
	is.Equal(s.BySource["127.0.0.2"]["202"]+s.BySource["127.0.0.3"]["202"], 6)
	is.True(s.BySource["127.0.0.2"]["202"] > 0 && s.BySource["127.0.0.3"]["202"] > 0)
	is.True(strings.Contains(stdout.String(), "submits from 127.0.0.2: 202 x"))
}

func TestA503WithRetryAfterIsARefusalNotAnError(t *testing.T) {
	is := is.New(t)
	_, addr := startFake(t, func(string) (string, bool) { return "", false })
	dir := images(t, "a.jpg", "busy.jpg")

	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"thumbload",
		"-addr", addr, "-key", "test-key-0123456789", "-secret", testSecret,
		"-n", "4", "-c", "2", "-width", "64", "-images", dir, "-timeout", "10s", "-json",
	}, &stdout, &stderr)

	is.NoErr(err) // uploads_busy with Retry-After is the service keeping its promise
	s := lastJSON(t, stdout.String())
	is.Equal([3]int{s.Submitted, s.Accepted, s.Refused}, [3]int{4, 2, 2})
	is.Equal(s.BadAnswers, 0)
	var busy *answerCount
	for i, a := range s.Answers {
		if a.Op == opSubmit && a.Status == 503 {
			busy = &s.Answers[i]
		}
	}
	is.True(busy != nil)
	is.Equal([3]any{busy.Code, busy.RetryAfter, busy.Count}, [3]any{"uploads_busy", true, 2})
	is.Equal(busy.Time.N, 2)
	is.True(strings.Contains(stdout.String(), "POST 503 uploads_busy +Retry-After"))
	is.Equal(s.Jobs.ByStatus, map[string]int{"succeeded": 2})
}

func TestA503WithoutRetryAfterAndALostJobAreProblems(t *testing.T) {
	is := is.New(t)
	_, addr := startFake(t, func(string) (string, bool) { return "", false })
	dir := images(t, "a.jpg", "bare503.jpg", "vanish.jpg")

	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"thumbload",
		"-addr", addr, "-key", "test-key-0123456789", "-secret", testSecret,
		"-n", "3", "-c", "1", "-width", "64", "-images", dir, "-timeout", "300ms", "-json",
	}, &stdout, &stderr)

	is.True(err != nil)
	is.Equal(err.Error(), "1 submits not accepted, 1 callbacks missing after -timeout, 2 answers outside the contract, 1 accepted jobs lost (404)")
	s := lastJSON(t, stdout.String())
	is.Equal(s.Refused, 0)
	is.Equal(len(s.Jobs.Lost), 1)
	is.Equal(s.Jobs.ByStatus, map[string]int{"succeeded": 1, "lost": 1})
}

func TestWaitPollReadsTheJobsBackWithoutCallbacks(t *testing.T) {
	is := is.New(t)
	_, addr := startFake(t, func(name string) (string, bool) {
		if name == "broken.jpg" {
			return "corrupt_image", false
		}
		return "", false
	})
	dir := images(t, "a.jpg", "broken.jpg")

	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"thumbload",
		"-addr", addr, "-key", "test-key-0123456789",
		"-n", "4", "-c", "2", "-width", "64", "-images", dir, "-timeout", "10s", "-json", "-wait", "poll",
	}, &stdout, &stderr)

	is.True(err != nil)
	is.Equal(err.Error(), "2 jobs failed")
	s := lastJSON(t, stdout.String())
	is.Equal([4]int{s.Accepted, s.Succeeded, s.Failed, s.Missing}, [4]int{4, 2, 2, 0})
	is.True(s.Latency == nil) // no callbacks were asked for, so none timed
	is.True(s.Seconds > 0 && s.Seconds == s.Jobs.LastFinishedSeconds)
	is.Equal(s.Jobs.Unsettled, 0)
}

func TestWaitNoneEndsWithTheLastAnswer(t *testing.T) {
	is := is.New(t)
	f, addr := startFake(t, func(string) (string, bool) { return "", false })
	dir := images(t, "a.jpg")

	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"thumbload",
		"-addr", addr, "-key", "test-key-0123456789",
		"-n", "3", "-c", "3", "-width", "64", "-images", dir, "-json", "-wait", "none",
	}, &stdout, &stderr)

	is.NoErr(err)
	s := lastJSON(t, stdout.String())
	is.Equal(s.Accepted, 3)
	is.True(s.Jobs == nil) // nothing read back
	f.mu.Lock()
	is.Equal(f.remotes["127.0.0.1"], 3) // the three submits, no GET
	f.mu.Unlock()
}

func TestCountAnswersGroupsByPhaseAndKind(t *testing.T) {
	is := is.New(t)
	list := []answer{
		{op: opSubmit, status: 202, took: 3, source: "a"},
		{op: opSubmit, status: 503, code: "storage_unavailable", retryAfter: true, took: 5, source: "b"},
		{op: opGet, status: 200, took: 1},
		{op: opSubmit, status: 202, took: 1, source: "a"},
		{op: opGet, status: 0, err: "connection refused", took: 7},
	}
	phase := func(a answer) string {
		if a.took >= 5 {
			return "late"
		}
		return "early"
	}
	got := countAnswers(list, []string{"early", "late"}, phase)
	is.Equal(len(got), 4)
	is.Equal([3]any{got[0].Phase, got[0].label(), got[0].Count}, [3]any{"early", "POST 202", 2})
	is.Equal(got[1].label(), "GET job 200")
	is.Equal([2]any{got[2].Phase, got[2].label()}, [2]any{"late", "POST 503 storage_unavailable +Retry-After"})
	is.Equal([2]any{got[3].label(), got[3].Sample}, [2]any{"GET job no answer", "connection refused"})

	is.True(list[1].acceptable())
	is.True(!list[4].acceptable())
	is.True(!answer{op: opGet, status: 404}.acceptable())
	is.True(!answer{op: opGet, status: 503}.acceptable()) // no Retry-After
	is.True(!answer{op: opGet, status: 500, retryAfter: true}.acceptable())
	is.True(answer{op: opImage, status: 409, retryAfter: true}.acceptable())

	is.Equal(bySource(list, opSubmit), map[string]map[string]int{"a": {"202": 2}, "b": {"503": 1}})
}
