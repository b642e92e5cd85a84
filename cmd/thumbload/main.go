// Command thumbload measures a running Thumbnailed service from the outside:
// it submits images at a given concurrency with a callback URL pointing at a
// receiver it hosts itself, and reports throughput, submit→callback latency,
// errors and the service's peak RSS. In -idle mode it measures how long one
// small job submitted to an idle service takes to succeed.
//
// It starts nothing but its own callback receiver; see the usage below.
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
	if err := run(ctx, os.Args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "thumbload:", err)
		os.Exit(1)
	}
}
