// Package view turns job records into what clients see: the JSON of
// GET /v1/thumbnails/{id} (also the data of callbacks and events), the
// signed links to images, and the masked forms of email addresses and URLs.
// Masking happens here, where a record is shown, and nowhere else.
package view

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/thumbnailed/thumbnailed/jobs"
)

// JobView is a job as a client sees it. It never carries the owner, the key,
// the full email address, the callback URL, or the worker's counters.
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

// RequestView is what the client asked for, with the defaults filled in.
type RequestView struct {
	Source  string        `json:"source"`
	URL     string        `json:"url,omitempty"`
	Width   int           `json:"width,omitempty"`
	Height  int           `json:"height,omitempty"`
	Fit     string        `json:"fit"`
	Gravity string        `json:"gravity,omitempty"`
	Focal   *jobs.Point   `json:"focal,omitempty"`
	Format  string        `json:"format"`
	Quality int           `json:"quality"`
	Outputs []jobs.Output `json:"outputs,omitempty"`
}

// ResultView describes what a succeeded job made. Its top-level image
// fields describe the first output (the shape earlier clients read).
type ResultView struct {
	Width       int               `json:"width"`
	Height      int               `json:"height"`
	Format      string            `json:"format"`
	ContentType string            `json:"content_type"`
	Bytes       int               `json:"bytes"`
	ImageURL    string            `json:"image_url"`
	Engine      string            `json:"engine,omitempty"`
	Outputs     []OutputView      `json:"outputs"`
	Srcset      map[string]string `json:"srcset,omitempty"`
	Placeholder *jobs.Placeholder `json:"placeholder,omitempty"`
}

// OutputView is one image of a succeeded job, with its signed link.
type OutputView struct {
	Name         string    `json:"name"`
	Width        int       `json:"width"`
	Height       int       `json:"height"`
	Format       string    `json:"format"`
	ContentType  string    `json:"content_type"`
	Bytes        int       `json:"bytes"`
	URL          string    `json:"url"`
	URLExpiresAt time.Time `json:"url_expires_at"`
	// Base64 is the image itself, in callbacks only, within the inline limit.
	Base64 string `json:"base64,omitempty"`
}

// ErrorView says why a job failed.
type ErrorView struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// DeliveryView is the state of one push channel.
type DeliveryView struct {
	Channel       string          `json:"channel"`
	Target        string          `json:"target"`
	Status        string          `json:"status"`
	Attempts      int             `json:"attempts"`
	LastAttemptAt *time.Time      `json:"last_attempt_at,omitempty"`
	NextAttemptAt *time.Time      `json:"next_attempt_at,omitempty"`
	LastError     string          `json:"last_error,omitempty"`
	ErrorCode     string          `json:"error_code,omitempty"`
	Log           []jobs.LogEntry `json:"log,omitempty"`
}

// JobPath is the API path of a job.
func JobPath(id string) string { return "/v1/thumbnails/" + url.PathEscape(id) }

// Job is the client's view of j; links signs the image URLs.
func Job(j *jobs.Job, links Links) JobView {
	r := j.Request
	v := JobView{
		ID:         j.ID,
		Status:     string(j.Status),
		CreatedAt:  j.CreatedAt.UTC(),
		StartedAt:  utc(j.StartedAt),
		FinishedAt: utc(j.FinishedAt),
		Request: RequestView{
			Source: r.Source, URL: redactPassword(r.URL), Width: r.Width, Height: r.Height, Fit: r.Fit,
			Gravity: r.Gravity, Focal: r.Focal, Format: r.Format, Quality: r.Quality, Outputs: r.Outputs,
		},
	}
	if j.Status == jobs.StatusSucceeded && j.Result != nil && len(j.Result.Outputs) > 0 {
		v.Result = result(j, links)
	}
	if j.Status == jobs.StatusFailed && j.Error != nil {
		v.Error = &ErrorView{Code: j.Error.Code, Message: j.Error.Message}
	}
	for _, d := range j.Deliveries {
		v.Deliveries = append(v.Deliveries, Delivery(j, d))
	}
	return v
}

// Delivery is the client's view of one delivery of j.
func Delivery(j *jobs.Job, d jobs.Delivery) DeliveryView {
	return DeliveryView{
		Channel:       d.Channel,
		Target:        Target(d.Channel, j.Target(d.Channel)),
		Status:        d.Status,
		Attempts:      d.Attempts,
		LastAttemptAt: utc(d.LastAttemptAt),
		NextAttemptAt: utc(d.NextAttemptAt),
		LastError:     d.LastError,
		ErrorCode:     d.ErrorCode,
		Log:           d.Log,
	}
}

func result(j *jobs.Job, links Links) *ResultView {
	res := j.Result
	rv := &ResultView{Engine: res.Engine, Placeholder: res.Placeholder}
	for _, o := range res.Outputs {
		rv.Outputs = append(rv.Outputs, OutputView{
			Name: o.Name, Width: o.Width, Height: o.Height, Format: o.Format, ContentType: o.ContentType, Bytes: o.Bytes,
			URL: links.Output(j.ID, o.Name, j.ExpiresAt), URLExpiresAt: j.ExpiresAt.UTC().Truncate(time.Second),
		})
	}
	first := rv.Outputs[0]
	rv.Width, rv.Height, rv.Format, rv.ContentType, rv.Bytes, rv.ImageURL = first.Width, first.Height, first.Format, first.ContentType, first.Bytes, first.URL
	rv.Srcset = srcset(rv.Outputs)
	return rv
}

// srcset is, for every format with two or more outputs of different widths,
// the HTML srcset of those outputs, narrowest first.
func srcset(outputs []OutputView) map[string]string {
	byFormat := map[string][]OutputView{}
	for _, o := range outputs {
		byFormat[o.Format] = append(byFormat[o.Format], o)
	}
	out := map[string]string{}
	for format, list := range byFormat {
		sort.SliceStable(list, func(a, b int) bool { return list[a].Width < list[b].Width })
		var parts []string
		seen := map[int]bool{}
		for _, o := range list {
			if !seen[o.Width] {
				seen[o.Width] = true
				parts = append(parts, fmt.Sprintf("%s %dw", o.URL, o.Width))
			}
		}
		if len(parts) >= 2 {
			out[format] = strings.Join(parts, ", ")
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Target is the masked form of a delivery target: MaskEmail for email,
// MaskURL for callbacks.
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
