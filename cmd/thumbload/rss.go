package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// rssInterval is how often the service's RSS is sampled.
const rssInterval = 50 * time.Millisecond

// rssReport is the peak resident memory of the service's processes.
type rssReport struct {
	Processes    []rssProcess `json:"processes"`
	PeakTotalMiB float64      `json:"peak_total_mib"` // peak of the sum of samples taken together
	Samples      int          `json:"samples"`
}

type rssProcess struct {
	PID     int     `json:"pid"`
	PeakMiB float64 `json:"peak_mib"`  // highest VmRSS sampled during the run
	HWMMiB  float64 `json:"vmhwm_mib"` // the kernel's VmHWM at the end: peak since the process started
}

// memStatus is what /proc/PID/status says about memory, in bytes.
type memStatus struct {
	rss, hwm int64
}

// readRSS reads VmRSS and VmHWM from /proc/PID/status.
func readRSS(pid int) (memStatus, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStatus{}, err
	}
	return parseStatus(b)
}

// parseStatus reads the "VmRSS:   1234 kB" and "VmHWM:" lines.
func parseStatus(b []byte) (memStatus, error) {
	var m memStatus
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(name) {
		case "VmRSS":
			dst = &m.rss
		case "VmHWM":
			dst = &m.hwm
		default:
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return m, fmt.Errorf("unexpected %s line %q", name, sc.Text())
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return m, fmt.Errorf("unexpected %s line %q", name, sc.Text())
		}
		*dst = kb << 10
		found++
	}
	if found < 2 {
		return m, fmt.Errorf("no VmRSS/VmHWM in the status (a kernel thread, or not Linux?)")
	}
	return m, nil
}

// rssSampler samples the processes every rssInterval until stopped.
type rssSampler struct {
	pids []int
	stop chan struct{}
	done sync.WaitGroup

	peaks   []int64
	last    []memStatus
	total   int64
	samples int
}

// startRSS starts sampling; it returns nil when there is nothing to sample.
func startRSS(pids []int) *rssSampler {
	if len(pids) == 0 {
		return nil
	}
	s := &rssSampler{pids: pids, stop: make(chan struct{}), peaks: make([]int64, len(pids)), last: make([]memStatus, len(pids))}
	sampleEvery(rssInterval, s.stop, &s.done, s.sample)
	return s
}

func (s *rssSampler) sample() {
	var sum int64
	for i, pid := range s.pids {
		m, err := readRSS(pid)
		if err != nil {
			continue // the process has gone; keep what was seen
		}
		s.last[i] = m
		s.peaks[i] = max(s.peaks[i], m.rss)
		sum += m.rss
	}
	s.total = max(s.total, sum)
	s.samples++
}

// finish takes a last sample and reports.
func (s *rssSampler) finish() *rssReport {
	if s == nil {
		return nil
	}
	close(s.stop)
	s.done.Wait()
	s.sample()
	r := &rssReport{PeakTotalMiB: mib(s.total), Samples: s.samples}
	for i, pid := range s.pids {
		r.Processes = append(r.Processes, rssProcess{PID: pid, PeakMiB: mib(s.peaks[i]), HWMMiB: mib(s.last[i].hwm)})
	}
	return r
}

func mib(b int64) float64 { return float64(b*10>>20) / 10 }

// sampleEvery calls sample now and then every interval, in a goroutine that
// done waits for, until stop is closed.
func sampleEvery(interval time.Duration, stop <-chan struct{}, done *sync.WaitGroup, sample func()) {
	sample()
	done.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				sample()
			}
		}
	})
}
