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

// EventData is the job as GET /v1/thumbnails/{id} shows it, plus the
// thumbnail itself when the job succeeded.
type EventData struct {
	JobView
	Image *EventImage `json:"image,omitempty"`
}

// EventImage is the thumbnail, base64-encoded (standard alphabet, padded).
type EventImage struct {
	ContentType string `json:"content_type"`
	Base64      string `json:"base64"`
}

// NewEvent is the final event of an ended job. Its timestamp is when the
// job finished, so every retry carries the same event. image may be nil
// (a failed job, or a thumbnail that has expired).
func NewEvent(j *jobs.Job, image []byte) Event {
	ts := j.CreatedAt
	if j.FinishedAt != nil {
		ts = *j.FinishedAt
	}
	e := Event{Type: j.EventType(), Timestamp: ts.UTC(), Data: EventData{JobView: Job(j)}}
	if j.Status == jobs.StatusSucceeded && j.Result != nil && image != nil {
		e.Data.Image = &EventImage{ContentType: j.Result.ContentType, Base64: base64.StdEncoding.EncodeToString(image)}
	}
	return e
}
