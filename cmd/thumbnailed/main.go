// Command thumbnailed is the Thumbnailed service: the API, the workers, and
// the job web UI, by role (all, api, worker, webui).
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stdout := os.Stdout
	os.Stdout = libraryOutput(stdout)
	if err := run(ctx, os.Args, os.Environ(), stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "thumbnailed:", err)
		os.Exit(1)
	}
}

// libraryOutput is where a library that prints to standard output writes
// instead: gocraft/work prints "ERROR: key - message" lines, which become
// JSON log records like every other line of the process (anything else
// passes through as it is).
func libraryOutput(out *os.File) *os.File {
	r, w, err := os.Pipe()
	if err != nil {
		return out
	}
	log := slog.New(slog.NewJSONHandler(out, nil)).With("component", "gocraft/work")
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "ERROR: "); ok {
				where, msg, _ := strings.Cut(rest, " - ")
				log.Error("gocraft/work reported an error", "where", where, "error", msg)
				continue
			}
			_, _ = io.WriteString(out, line+"\n")
		}
	}()
	return w
}
