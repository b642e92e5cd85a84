package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of /proc's CPU times: 100 on
// every Linux architecture Go runs on.
const clockTicks = 100

// cpuReport is the CPU time a run cost: the whole machine's (every process,
// the client included: on one machine the client's work is part of the
// bill), each -pids process's, and thumbload's own.
type cpuReport struct {
	WallSeconds float64 `json:"wall_seconds"`
	// MachineBusySeconds is the busy time of all CPUs over the run
	// (/proc/stat: user, nice, system, irq, softirq, steal).
	MachineBusySeconds float64 `json:"machine_busy_seconds"`
	// MachineBusyPerJobMS divides it by the jobs that succeeded.
	MachineBusyPerJobMS float64      `json:"machine_busy_per_job_ms,omitempty"`
	Processes           []cpuProcess `json:"processes,omitempty"`
	SelfSeconds         float64      `json:"self_seconds"` // thumbload: client, receiver, -serve
}

type cpuProcess struct {
	PID     int     `json:"pid"`
	Seconds float64 `json:"seconds"` // utime + stime, all threads
}

// cpuMeter reads the counters at the start of a run and again at its end.
type cpuMeter struct {
	start time.Time
	pids  []int
	busy  int64
	procs []int64
	self  int64
}

func startCPU(pids []int) *cpuMeter {
	m := &cpuMeter{start: time.Now(), pids: pids, procs: make([]int64, len(pids))}
	m.busy, _ = machineBusyTicks()
	for i, p := range pids {
		m.procs[i], _ = processTicks(strconv.Itoa(p))
	}
	m.self, _ = processTicks("self")
	return m
}

// finish reports the CPU used since start; succeeded divides the machine's.
func (m *cpuMeter) finish(succeeded int) *cpuReport {
	r := &cpuReport{WallSeconds: seconds(time.Since(m.start))}
	if busy, err := machineBusyTicks(); err == nil {
		r.MachineBusySeconds = ticks(busy - m.busy)
		if succeeded > 0 {
			r.MachineBusyPerJobMS = float64(int64(r.MachineBusySeconds*1e4/float64(succeeded))) / 10
		}
	}
	for i, p := range m.pids {
		t, err := processTicks(strconv.Itoa(p))
		if err != nil {
			continue // gone; nothing to say
		}
		r.Processes = append(r.Processes, cpuProcess{PID: p, Seconds: ticks(t - m.procs[i])})
	}
	if t, err := processTicks("self"); err == nil {
		r.SelfSeconds = ticks(t - m.self)
	}
	return r
}

func ticks(n int64) float64 { return float64(n) / clockTicks }

// machineBusyTicks sums the busy fields of /proc/stat's "cpu" line.
func machineBusyTicks() (int64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseMachineBusy(b)
}

// parseMachineBusy reads "cpu  user nice system idle iowait irq softirq steal ...".
func parseMachineBusy(b []byte) (int64, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return 0, fmt.Errorf("unexpected /proc/stat first line %q", line)
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		n, err := strconv.ParseInt(string(f[i]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected /proc/stat first line %q", line)
		}
		busy += n
	}
	return busy, nil
}

// processTicks is utime + stime of /proc/PID/stat (pid may be "self").
func processTicks(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	return parseProcessTicks(b)
}

// parseProcessTicks reads fields 14 and 15 of a stat line; the command name
// (field 2, in parentheses) may hold spaces, so fields count from its end.
func parseProcessTicks(b []byte) (int64, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, fmt.Errorf("unexpected stat line %q", b)
	}
	f := bytes.Fields(b[end+1:])
	// f[0] is field 3 (state): utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected stat line %q", b)
	}
	u, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	s, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected stat line %q", b)
	}
	return u + s, nil
}

func (r *cpuReport) print(w interface{ Write([]byte) (int, error) }) {
	if r == nil {
		return
	}
	fmt.Fprintf(w, "cpu: machine busy %.2f s over %.3f s wall", r.MachineBusySeconds, r.WallSeconds)
	if r.MachineBusyPerJobMS > 0 {
		fmt.Fprintf(w, " (%.1f ms per succeeded job)", r.MachineBusyPerJobMS)
	}
	fmt.Fprintf(w, "; thumbload itself %.2f s\n", r.SelfSeconds)
	for _, p := range r.Processes {
		fmt.Fprintf(w, "cpu pid %d: %.2f s\n", p.PID, p.Seconds)
	}
}
