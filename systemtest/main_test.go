package systemtest

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/thumbnailed/thumbnailed/internal/testci"
)

// binary is the thumbnailed program built once for the whole package.
var binary string

// cannotRun says why this run cannot start real processes ("" when it
// can); missingTool is set when the reason is a program not on PATH.
var cannotRun, missingTool string

// TestMain builds the binary once. It never decides the outcome itself:
// when the tests cannot run, each one says so (needProcesses), so the
// package cannot report success having run nothing without a reason.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		cannotRun = "skipped under -short: these tests start real processes"
	} else {
		for _, tool := range []string{"redis-server", "redis-cli"} {
			if _, err := exec.LookPath(tool); err != nil {
				missingTool = tool
				cannotRun = tool + " is not on PATH: install Redis to run the system tests"
				break
			}
		}
	}
	if cannotRun != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "thumbnailed-systemtest-")
	if err != nil {
		fmt.Println("systemtest:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "thumbnailed")
	start := time.Now()
	build := exec.Command("go", "build", "-o", binary, "./cmd/thumbnailed")
	build.Dir = ".." // the module root
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Println("systemtest: go build ./cmd/thumbnailed:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	fmt.Printf("systemtest: built %s in %s\n", binary, time.Since(start).Round(time.Millisecond))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needProcesses skips t, saying why, when this run cannot start real
// processes (under -short, or without redis-server), and fails it when the
// CI variable is set and a tool is missing: CI must run these tests.
func needProcesses(t *testing.T) {
	t.Helper()
	switch {
	case cannotRun == "":
	case missingTool != "":
		testci.Missing(t, cannotRun)
	default:
		t.Skip(cannotRun) // -short
	}
}
