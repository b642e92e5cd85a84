package main

import (
	"strings"
	"testing"

	"github.com/matryer/is"
)

func TestFromSpreadsTheSubmitsOverSourceAddresses(t *testing.T) {
	is := is.New(t)
	f := startFake(t)
	stdout, err := f.load("-secret", testSecret, "-n", "6", "-c", "2", "-images", images(t, "a.jpg"),
		"-timeout", "10s", "-json", "-from", "127.0.0.2,127.0.0.3")

	is.NoErr(err)
	s := lastJSON(t, stdout)
	// Every request went out from one of the two, in turn (the submits and
	// the GETs that read the jobs back share the turn).
	f.mu.Lock()
	is.Equal(len(f.remotes), 2)
	is.True(f.remotes["127.0.0.2"] >= 3 && f.remotes["127.0.0.3"] >= 3)
	f.mu.Unlock()
	is.Equal(len(s.BySource), 2)
	is.Equal(s.BySource["127.0.0.2"]["202"]+s.BySource["127.0.0.3"]["202"], 6)
	is.True(s.BySource["127.0.0.2"]["202"] > 0 && s.BySource["127.0.0.3"]["202"] > 0)
	is.True(strings.Contains(stdout, "submits from 127.0.0.2: 202 x"))
}

func TestA503WithRetryAfterIsARefusalNotAnError(t *testing.T) {
	is := is.New(t)
	stdout, err := startFake(t).load("-secret", testSecret, "-n", "4", "-c", "2",
		"-images", images(t, "a.jpg", "busy.jpg"), "-timeout", "10s", "-json")

	is.NoErr(err) // uploads_busy with Retry-After is the service keeping its promise
	s := lastJSON(t, stdout)
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
	is.True(strings.Contains(stdout, "POST 503 uploads_busy +Retry-After"))
	is.Equal(s.Jobs.ByStatus, map[string]int{"succeeded": 2})
}

func TestA503WithoutRetryAfterAndALostJobAreProblems(t *testing.T) {
	is := is.New(t)
	stdout, err := startFake(t).load("-secret", testSecret, "-n", "3", "-c", "1",
		"-images", images(t, "a.jpg", "bare503.jpg", "vanish.jpg"), "-timeout", "300ms", "-json")

	s := failedRun(t, stdout, err, "1 submits not accepted, 1 callbacks missing after -timeout, 2 answers outside the contract, 1 accepted jobs lost (404)")
	is.Equal(s.Refused, 0)
	is.Equal(len(s.Jobs.Lost), 1)
	is.Equal(s.Jobs.ByStatus, map[string]int{"succeeded": 1, "lost": 1})
}

func TestWaitPollReadsTheJobsBackWithoutCallbacks(t *testing.T) {
	is := is.New(t)
	stdout, err := startFake(t).load("-n", "4", "-c", "2", "-images", images(t, "a.jpg", "broken.jpg"),
		"-timeout", "10s", "-json", "-wait", "poll")

	s := failedRun(t, stdout, err, "2 jobs failed")
	is.Equal([4]int{s.Accepted, s.Succeeded, s.Failed, s.Missing}, [4]int{4, 2, 2, 0})
	is.True(s.Latency == nil) // no callbacks were asked for, so none timed
	is.True(s.Seconds > 0 && s.Seconds == s.Jobs.LastFinishedSeconds)
	is.Equal(s.Jobs.Unsettled, 0)
}

func TestWaitNoneEndsWithTheLastAnswer(t *testing.T) {
	is := is.New(t)
	f := startFake(t)
	stdout, err := f.load("-n", "3", "-c", "3", "-images", images(t, "a.jpg"), "-json", "-wait", "none")

	is.NoErr(err)
	s := lastJSON(t, stdout)
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
