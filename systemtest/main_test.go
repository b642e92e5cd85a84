package systemtest

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// binary is the thumbnailed program built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("systemtest: skipped under -short (these tests start real processes)")
		os.Exit(0)
	}
	for _, tool := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Printf("systemtest: skipped: %s is not on PATH\n", tool)
			os.Exit(0)
		}
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
