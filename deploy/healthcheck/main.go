// Command thumbnailed-healthcheck is the container's HEALTHCHECK: it asks the
// local thumbnailed process for /healthz and exits 0 when it answers 200, or
// 1 otherwise. It needs no curl in the image.
//
//	thumbnailed-healthcheck          checks THUMBNAILED_ADDR (default :8080): api, worker, all
//	thumbnailed-healthcheck webui    checks THUMBNAILED_WEBUI_ADDR (default 127.0.0.1:5040)
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"
)

func main() {
	if err := check(os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "unhealthy:", err)
		os.Exit(1)
	}
}

func check(args []string, getenv func(string) string) error {
	name, def := "THUMBNAILED_ADDR", ":8080"
	switch {
	case len(args) == 0:
	case len(args) == 1 && args[0] == "webui":
		name, def = "THUMBNAILED_WEBUI_ADDR", "127.0.0.1:5040"
	default:
		return fmt.Errorf("usage: thumbnailed-healthcheck [webui]")
	}
	addr := getenv(name)
	if addr == "" {
		addr = def
	}
	url, err := healthURL(addr)
	if err != nil {
		return fmt.Errorf("%s=%q: %w", name, addr, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil}} // never via HTTP_PROXY
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// healthURL is where a process listening on addr answers from inside its
// own container: loopback when it listens on every interface.
func healthURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}
