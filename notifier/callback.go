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
	"strings"
	"time"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/view"
	"github.com/thumbnailed/thumbnailed/webhook"
)

// UserAgent is sent with every callback.
const UserAgent = "Thumbnailed-Webhooks/1"

// maxDrain is how much of a receiver's answer is read before the connection
// is closed or reused; its first bytes go to the attempt log.
const maxDrain = 64 << 10

// sendCallback makes one attempt to POST the job's event to its callback URL.
func (n *Notifier) sendCallback(ctx context.Context, log *slog.Logger, job *jobs.Job, k known) result {
	body, r, ok := n.eventBody(ctx, log, job, k)
	if !ok {
		return r
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, job.Request.CallbackURL, bytes.NewReader(body))
	if err != nil {
		return failed(codes.CallbackForbidden, "the callback URL is not valid")
	}
	sent := n.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(webhook.HeaderID, job.EventID())
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(sent.Unix(), 10))
	var signatures []string
	for _, secret := range n.secretsFor(job) {
		sig, err := webhook.Sign(secret, job.EventID(), sent, body)
		if err != nil {
			return failed(codes.Internal, "could not sign the callback: a webhook secret is not valid")
		}
		signatures = append(signatures, sig)
	}
	if len(signatures) > 0 {
		req.Header.Set(webhook.HeaderSignature, strings.Join(signatures, " "))
	}

	resp, err := n.client.Do(req)
	if err != nil {
		var forbidden *safehttp.ForbiddenError
		switch {
		case errors.As(err, &forbidden):
			return failed(codes.CallbackForbidden, "the callback URL is not allowed: %s", forbidden.Error())
		case safehttp.IsTimeout(err):
			return retryable("the receiver did not answer within %s", n.cfg.CallbackTimeout)
		default:
			return retryable("could not reach the receiver: %s", reason(err))
		}
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxDrain))

	status := fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		r = result{delivered: true}
	case resp.StatusCode == http.StatusGone:
		r = failed(codes.CallbackGone, "the receiver answered %s: it wants no more callbacks", status)
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		r = withRetryAfter(retryable("the receiver answered %s; callbacks do not follow redirects, so give the final URL", status), resp.Header, n.now())
	default:
		r = withRetryAfter(retryable("the receiver answered %s", status), resp.Header, n.now())
	}
	r.statusCode, r.response = resp.StatusCode, cleanResponse(answer)
	return r
}

// eventBody is the job's callback body: the frozen one, or, on the first
// attempt, the event made now and frozen (jobs.EventBlob). Every attempt
// and redelivery sends exactly those bytes, so receivers that dedupe on a
// body hash see repeats as repeats; the live state is in GET. A fresh
// attempt (k) knows there is nothing frozen yet and does not look.
func (n *Notifier) eventBody(ctx context.Context, log *slog.Logger, job *jobs.Job, k known) ([]byte, result, bool) {
	if !k.fresh {
		body, err := n.blobs.Get(ctx, job.ID, jobs.EventBlob)
		if err == nil {
			return body, result{}, true
		}
		if !errors.Is(err, blob.ErrNotFound) {
			return nil, retryable("could not read the callback's body: %s", err), false
		}
	}
	inline, err := n.inlineImages(ctx, job, k.images)
	if err != nil {
		return nil, retryable("could not read the images: %s", err), false
	}
	body, err := json.Marshal(view.NewEvent(job, n.links, inline))
	if err != nil {
		return nil, failed(codes.Internal, "could not encode the callback: %s", err), false
	}
	if _, err := n.blobs.Put(ctx, job.ID, jobs.EventBlob, bytes.NewReader(body), job.ExpiresAt.Add(jobs.BlobMargin)); err != nil {
		return nil, retryable("could not store the callback's body: %s", err), false
	}
	log.Debug("callback body frozen", "bytes", len(body), "inline_images", len(inline))
	return body, result{}, true
}

// inlineImages are the bytes of every output when together they fit in
// the inline limit; nil otherwise (the event then carries links only).
// They are taken from made (the outputs' bytes as the worker made them)
// when it has them, else read from the blob store.
func (n *Notifier) inlineImages(ctx context.Context, job *jobs.Job, made map[string][]byte) (map[string][]byte, error) {
	if job.Status != jobs.StatusSucceeded || job.Result == nil || n.cfg.InlineMaxBytes <= 0 {
		return nil, nil
	}
	var total int64
	for _, o := range job.Result.Outputs {
		total += int64(o.Bytes)
	}
	if total > n.cfg.InlineMaxBytes {
		return nil, nil
	}
	images := map[string][]byte{}
	for _, o := range job.Result.Outputs {
		if b, ok := made[o.Name]; ok && len(b) == o.Bytes {
			images[o.Name] = b
			continue
		}
		b, err := n.blobs.Get(ctx, job.ID, o.Blob())
		if errors.Is(err, blob.ErrNotFound) {
			return nil, nil // expired: links only
		}
		if err != nil {
			return nil, err
		}
		images[o.Name] = b
	}
	return images, nil
}

// withRetryAfter adds the receiver's Retry-After (seconds or an HTTP date).
func withRetryAfter(r result, h http.Header, now time.Time) result {
	if d, ok := parseRetryAfter(h.Get("Retry-After"), now); ok {
		r.retryAfter, r.hasRetryAfter = d, true
	}
	return r
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
