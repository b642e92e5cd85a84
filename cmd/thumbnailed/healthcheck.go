package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/thumbnailed/thumbnailed/config"
)

// healthcheck is `thumbnailed healthcheck [webui]`, the container's
// HEALTHCHECK: it asks the local process for /healthz and fails unless it
// answers 200. It reads the same configuration as the roles (so the same
// THUMBNAILED_ADDR or THUMBNAILED_WEBUI_ADDR and defaults), and needs no
// curl in the image.
func healthcheck(args []string, getenv func(string) string) error {
	addrs, err := config.LoadAddrs(getenv)
	if err != nil {
		return err
	}
	name, addr := "THUMBNAILED_ADDR", addrs.API
	switch {
	case len(args) == 0:
	case len(args) == 1 && args[0] == "webui":
		name, addr = "THUMBNAILED_WEBUI_ADDR", addrs.WebUI
	default:
		return fmt.Errorf("usage: thumbnailed healthcheck [webui]")
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
		return fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("unhealthy: GET %s: %s", url, resp.Status)
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
