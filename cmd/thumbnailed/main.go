// Command thumbnailed is the Thumbnailed service: the API, the workers, and
// the job web UI, by role (all, api, worker, webui).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "thumbnailed:", err)
		os.Exit(1)
	}
}
