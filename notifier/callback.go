package notifier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/view"
	"github.com/thumbnailed/thumbnailed/webhook"
)

// UserAgent is sent with every callback.
const UserAgent = "Thumbnailed-Webhooks/1"

// maxDrain is how much of a receiver's answer is read (and thrown away)
// before the connection is closed or reused.
const maxDrain = 64 << 10

// sendCallback makes one attempt to POST the job's event to its callback URL.
func (n *Notifier) sendCallback(ctx context.Context, log *slog.Logger, job *jobs.Job) outcome {
	target := job.Request.CallbackURL
	// The URL was checked at submit; the rule may have changed since, and
	// the dial-time check below covers what the name resolves to now.
	if err := safehttp.CheckURL(target, n.cfg.AllowPrivateNetworks); err != nil {
		return failed(CodeCallbackForbidden, "the callback URL is not allowed: %s", reason(err))
	}
	var image []byte
	if job.Status == jobs.StatusSucceeded {
		var err error
		image, err = n.store.Image(ctx, job.ID)
		if errors.Is(err, jobs.ErrNotFound) {
			log.Warn("the thumbnail has expired; the callback goes without it")
		} else if err != nil {
			return retryable("could not read the thumbnail: %s", err)
		}
	}
	body, err := json.Marshal(view.NewEvent(job, image))
	if err != nil {
		return failed(CodeInternal, "could not encode the callback: %s", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return failed(CodeCallbackForbidden, "the callback URL is not valid")
	}
	sent := n.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(webhook.HeaderID, job.EventID())
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(sent.Unix(), 10))
	if n.cfg.WebhookSecret != "" {
		sig, err := webhook.Sign(n.cfg.WebhookSecret, job.EventID(), sent, body)
		if err != nil {
			return failed(CodeInternal, "could not sign the callback: the webhook secret is not valid")
		}
		req.Header.Set(webhook.HeaderSignature, sig)
	}

	resp, err := n.client.Do(req)
	if err != nil {
		var forbidden *safehttp.ForbiddenError
		switch {
		case errors.As(err, &forbidden):
			return failed(CodeCallbackForbidden, "the callback URL is not allowed: %s", forbidden.Error())
		case safehttp.IsTimeout(err):
			return retryable("the receiver did not answer within %s", n.cfg.CallbackTimeout)
		default:
			return retryable("could not reach the receiver: %s", reason(err))
		}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))

	status := fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return outcome{delivered: true}
	case resp.StatusCode == http.StatusGone:
		return failed(CodeCallbackGone, "the receiver answered %s: it wants no more callbacks", status)
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return withRetryAfter(retryable("the receiver answered %s; callbacks do not follow redirects, so give the final URL", status), resp.Header, n.now())
	default:
		return withRetryAfter(retryable("the receiver answered %s", status), resp.Header, n.now())
	}
}

// withRetryAfter adds the receiver's Retry-After (seconds or an HTTP date).
func withRetryAfter(o outcome, h http.Header, now time.Time) outcome {
	if d, ok := parseRetryAfter(h.Get("Retry-After"), now); ok {
		o.retryAfter, o.hasRetryAfter = d, true
	}
	return o
}

func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(365*24*time.Hour/time.Second) {
			secs = int64(365 * 24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// reason is an error's text without the URL that *url.Error puts first
// (`Post "https://…?token=…": `), which may hold the receiver's secrets.
func reason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
