// Package view turns job records into what clients see: the JSON of
// GET /v1/thumbnails/{id} (also the data of callbacks), and the masked forms
// of email addresses and URLs used in delivery targets and logs. The HTTP
// layer and the notifier share it so that both show a job the same way.
package view

import (
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/thumbnailed/thumbnailed/jobs"
)

// JobView is a job as a client sees it. It never carries the owner, the
// full email address, the callback URL, or the worker's attempt and crash
// counters.
type JobView struct {
	ID         string         `json:"id"`
	Status     string         `json:"status"`
	CreatedAt  time.Time      `json:"created_at"`
	StartedAt  *time.Time     `json:"started_at,omitempty"`
	FinishedAt *time.Time     `json:"finished_at,omitempty"`
	Request    RequestView    `json:"request"`
	Result     *ResultView    `json:"result,omitempty"`
	Error      *ErrorView     `json:"error,omitempty"`
	Deliveries []DeliveryView `json:"deliveries,omitempty"`
}

// RequestView is what the client asked for.
type RequestView struct {
	Source  string `json:"source"`
	URL     string `json:"url,omitempty"`
	Width   int    `json:"width,omitempty"`
	Height  int    `json:"height,omitempty"`
	Fit     string `json:"fit"`
	Format  string `json:"format"`
	Quality int    `json:"quality"`
}

// ResultView describes the thumbnail of a succeeded job.
type ResultView struct {
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Format      string `json:"format"`
	ContentType string `json:"content_type"`
	Bytes       int    `json:"bytes"`
	ImageURL    string `json:"image_url"`
	// Engine names the image engine and its version that made the thumbnail.
	Engine string `json:"engine,omitempty"`
}

// ErrorView says why a job failed.
type ErrorView struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// DeliveryView is the state of one push channel.
type DeliveryView struct {
	Channel       string     `json:"channel"`
	Target        string     `json:"target"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	LastAttemptAt *time.Time `json:"last_attempt_at,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
}

// ImagePath is the API path of a job's thumbnail.
func ImagePath(id string) string { return "/v1/thumbnails/" + url.PathEscape(id) + "/image" }

// JobPath is the API path of a job.
func JobPath(id string) string { return "/v1/thumbnails/" + url.PathEscape(id) }

// Job is the client's view of j.
func Job(j *jobs.Job) JobView {
	v := JobView{
		ID:         j.ID,
		Status:     string(j.Status),
		CreatedAt:  j.CreatedAt.UTC(),
		StartedAt:  utc(j.StartedAt),
		FinishedAt: utc(j.FinishedAt),
		Request: RequestView{
			Source:  j.Request.Source,
			URL:     redactPassword(j.Request.URL),
			Width:   j.Request.Width,
			Height:  j.Request.Height,
			Fit:     j.Request.Fit,
			Format:  j.Request.Format,
			Quality: j.Request.Quality,
		},
	}
	if j.Status == jobs.StatusSucceeded && j.Result != nil {
		v.Result = &ResultView{
			Width:       j.Result.Width,
			Height:      j.Result.Height,
			Format:      j.Result.Format,
			ContentType: j.Result.ContentType,
			Bytes:       j.Result.Bytes,
			ImageURL:    ImagePath(j.ID),
			Engine:      j.Result.Engine,
		}
	}
	if j.Status == jobs.StatusFailed && j.Error != nil {
		v.Error = &ErrorView{Code: j.Error.Code, Message: j.Error.Message}
	}
	for _, d := range j.Deliveries {
		v.Deliveries = append(v.Deliveries, DeliveryView{
			Channel:       d.Channel,
			Target:        Target(d.Channel, d.Target),
			Status:        d.Status,
			Attempts:      d.Attempts,
			LastAttemptAt: utc(d.LastAttemptAt),
			NextAttemptAt: utc(d.NextAttemptAt),
			LastError:     d.LastError,
		})
	}
	return v
}

// Target is the masked form of a delivery target: MaskEmail for email,
// MaskURL for callbacks. Masking is idempotent, so a target stored masked
// stays the same.
func Target(channel, target string) string {
	switch channel {
	case jobs.ChannelEmail:
		return MaskEmail(target)
	case jobs.ChannelCallback:
		return MaskURL(target)
	default:
		return ""
	}
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// redactPassword hides a password in a source URL's userinfo; the rest is
// the client's own URL, shown only to the client that made the job.
func redactPassword(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}

// MaskEmail shows an address without revealing it: the first character of
// the local part and the domain ("m***@example.com"). Anything that is not
// an address becomes "***", and no address stays "".
func MaskEmail(addr string) string {
	if addr == "" {
		return ""
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 || strings.ContainsFunc(addr, unicode.IsControl) {
		return "***"
	}
	local, domain := addr[:at], addr[at+1:]
	first, _ := utf8.DecodeRuneInString(local)
	return string(first) + "***@" + strings.ToLower(domain)
}

// MaskURL keeps the scheme, host and path of a URL and drops the user
// information, query and fragment, where callback secrets usually live.
// Anything that does not parse as an absolute URL becomes "".
func MaskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	masked := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return masked.String()
}
