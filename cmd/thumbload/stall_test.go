package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// processState is the state letter of /proc/PID/stat ("T" when stopped).
func processState(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) state ...: comm may hold spaces, so read after the last ')'.
	s := string(b)
	return strings.Fields(s[strings.LastIndex(s, ")")+1:])[0]
}

func TestStallRunStopsTheProcessAndCountsTheAnswersDuringIt(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc (Linux)")
	}
	is := is.New(t)
	// A stand-in for redis-server: the fake service answers 503 with
	// Retry-After while it is stopped, and (ghosts) makes the job of a
	// submit so answered all the same, as a service whose write reached
	// Redis but whose answer did not would.
	sleeper := exec.Command("sleep", "60")
	is.NoErr(sleeper.Start())
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	pid := sleeper.Process.Pid

	f := startFake(t)
	f.stalled = func() bool { return processState(t, pid) == "T" }
	f.ghosts = true

	stdout, err := f.load("-secret", testSecret, "-c", "2", "-images", images(t, "a.jpg"), "-timeout", "10s", "-json",
		"-stall-pid", strconv.Itoa(pid), "-stall", "400ms", "-around", "300ms", "-pause", "10ms")

	is.NoErr(err)
	s := lastJSON(t, stdout)
	st := s.Stall
	is.Equal(s.Mode, "stall")
	is.Equal(processState(t, pid), "S") // continued at the end
	is.True(st.StallSeconds >= 0.4 && st.StallSeconds < 1)
	is.True(st.ContinuedAt.Sub(st.StoppedAt) >= 400*time.Millisecond)

	// During the stall every request got the fake's 503 with Retry-After,
	// at once; except that a request sent in the last moments of the stall
	// may reach the fake after the SIGCONT and be accepted: such a success
	// is listed with when it was sent, and must have been sent near the end.
	is.True(st.During.N > 0)
	is.Equal(st.OverLimit, 0)
	successes := 0
	for k, n := range st.DuringBy {
		is.True(n > 0)
		if !strings.Contains(k, "503 storage_unavailable +Retry-After") {
			successes += n
		}
	}
	is.Equal(len(st.SuccessesDuring), successes)
	stall := ms(st.ContinuedAt.Sub(st.StoppedAt))
	acceptedLate := 0
	for _, line := range st.SuccessesDuring {
		// "<op> <status> sent +<ms> ms, answered in <ms> ms"; op may hold a space ("GET job").
		head, tail, found := strings.Cut(line, " sent +")
		is.True(found)
		var sent float64
		_, err := fmt.Sscanf(tail, "%f ms", &sent)
		is.NoErr(err)
		cut := strings.LastIndex(head, " ")
		op := head[:cut]
		status, err := strconv.Atoi(head[cut+1:])
		is.NoErr(err)
		is.True(sent > stall-200) // sent in the last moments of the stall (a loaded machine may delay a request that long)
		if op == opSubmit && status == http.StatusAccepted {
			acceptedLate++
		}
	}
	is.Equal(st.AcceptedBy[phaseStall], acceptedLate)
	is.True(st.AcceptedBy[phaseBefore] > 0 && st.AcceptedBy[phaseAfter] > 0)
	is.Equal(s.BadAnswers, 0)

	// Every accepted job was read back ended; the ghosts were found.
	is.Equal(s.Jobs.ByStatus["succeeded"], s.Accepted)
	is.Equal(s.Missing, 0)
	is.True(st.Unpromised > 0)
	is.Equal(st.UnpromisedStatus["succeeded"], st.Unpromised)
	is.True(strings.Contains(stdout, "answers, during the stall:"))
}

func TestStallFlagsAreChecked(t *testing.T) {
	is := is.New(t)
	_, err := thumbload("-images", "x.jpg",
		"-stall-pid", "-5", "-redis", "redis://127.0.0.1:1", "-wait", "none", "-from", "not-an-ip")
	is.True(err != nil)
	for _, want := range []string{"-stall-pid -5: no such process", "-redis cannot watch", "-wait none is for load runs only", `-from: "not-an-ip"`} {
		is.True(strings.Contains(err.Error(), want))
	}
}
