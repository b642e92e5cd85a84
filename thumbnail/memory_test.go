package thumbnail

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// procStatus is a field of /proc/self/status, e.g. "VmHWM" -> "123456 kB".
func procStatus(field string) string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok && name == field {
			return strings.TrimSpace(value)
		}
	}
	return "?"
}

// statusKB is a field of /proc/self/status in kB, or -1.
func statusKB(field string) int {
	n, err := strconv.Atoi(strings.TrimSuffix(procStatus(field), " kB"))
	if err != nil {
		return -1
	}
	return n
}

const setMemoryChildEnv = "THUMBNAILED_TEST_SET_MEMORY_CHILD"

// TestMeasureSetMemory measures the peak resident set (VmHWM) of each of setJobs (a
// 12 MP JPEG to one 1024 px output; to 1024, 512 and 256 px in one job; the same as
// three jobs), each run in a process of its own, this test binary again, so that
// nothing else has touched its memory; three rounds, the cases interleaved. It is a
// measurement for BENCHMARKS.md rather than a test, so it runs only when asked:
//
//	THUMBNAILED_TEST_MEASURE_MEMORY=1 go test -count=1 -run '^TestMeasureSetMemory$' -v ./thumbnail/
func TestMeasureSetMemory(t *testing.T) {
	if name := os.Getenv(setMemoryChildEnv); name != "" {
		setMemoryChild(t, name)
		return
	}
	if os.Getenv("THUMBNAILED_TEST_MEASURE_MEMORY") == "" {
		t.Skip("a measurement: run with THUMBNAILED_TEST_MEASURE_MEMORY=1")
	}
	is := is.New(t)
	report := regexp.MustCompile(`before (\d+) kB, peak (\d+) kB`)
	peaks := map[string][]int{} // the job's own peak: VmHWM less what the process had before it
	for range 3 {
		for _, c := range setJobs {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMeasureSetMemory$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), setMemoryChildEnv+"="+c.name)
			out, err := cmd.CombinedOutput()
			is.NoErr(err) // the child ran its jobs
			m := report.FindSubmatch(out)
			is.True(m != nil) // and reported its memory
			before, _ := strconv.Atoi(string(m[1]))
			peak, _ := strconv.Atoi(string(m[2]))
			t.Logf("%s (%s): VmHWM %d kB, %d kB before the job", c.name, Default.Name(), peak, before)
			peaks[c.name] = append(peaks[c.name], peak-before)
		}
	}
	median := func(name string) int { p := slices.Clone(peaks[name]); slices.Sort(p); return p[len(p)/2] }
	one := median("one-1024")
	for _, c := range setJobs {
		t.Logf("%s (%s): the job's peak over the process's start %v kB, median %d kB (%.2fx one 1024 px output)",
			c.name, Default.Name(), peaks[c.name], median(c.name), float64(median(c.name))/float64(one))
	}
}

// setMemoryChild runs one case of setJobs in this process and reports its peak.
func setMemoryChild(t *testing.T, name string) {
	src := readTestdata(t, setPhoto)
	i := slices.IndexFunc(setJobs, func(c struct {
		name string
		jobs [][]Output
	}) bool {
		return c.name == name
	})
	is.New(t).True(i >= 0)
	before := statusKB("VmHWM")
	runSetJobs(t, src, setJobs[i].jobs)
	fmt.Printf("%s: before %d kB, peak %d kB\n", name, before, statusKB("VmHWM"))
}
