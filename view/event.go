package view

import (
	"encoding/base64"
	"time"

	"github.com/thumbnailed/thumbnailed/jobs"
)

// Event is the body of a callback:
//
//	{"type": "thumbnail.succeeded", "timestamp": "…", "data": {…the job…, "image": {…}}}
type Event struct {
	Type      string    `json:"type"` // "thumbnail.succeeded" or "thumbnail.failed"
	Timestamp time.Time `json:"timestamp"`
	Data      EventData `json:"data"`
}

// EventData is the job as GET /v1/thumbnails/{id} shows it, plus its first
// output as data.image.
type EventData struct {
	JobView
	Image *EventImage `json:"image,omitempty"`
}

// EventImage is the first output: its signed link and, within the inline
// limit, its bytes (base64, standard alphabet, padded).
type EventImage struct {
	ContentType string `json:"content_type"`
	URL         string `json:"url"`
	Base64      string `json:"base64,omitempty"`
}

// NewEvent is the final event of an ended job. Its timestamp is when the
// job finished. inline holds the bytes of every output when they travel in
// the body (nil: links only).
func NewEvent(j *jobs.Job, links Links, inline map[string][]byte) Event {
	ts := j.CreatedAt
	if j.FinishedAt != nil {
		ts = *j.FinishedAt
	}
	e := Event{Type: j.EventType(), Timestamp: ts.UTC(), Data: EventData{JobView: Job(j, links)}}
	if r := e.Data.Result; r != nil {
		for i := range r.Outputs {
			if b, ok := inline[r.Outputs[i].Name]; ok {
				r.Outputs[i].Base64 = base64.StdEncoding.EncodeToString(b)
			}
		}
		first := r.Outputs[0]
		e.Data.Image = &EventImage{ContentType: first.ContentType, URL: first.URL, Base64: first.Base64}
	}
	return e
}
