// Package jobs owns the job record: what a client asked for, where the work
// stands, the thumbnail bytes, and the state of every push delivery. It is the
// only package that knows Redis key names; everything else goes through Store.
package jobs

import (
	"time"
)

// Status is where a job stands. A job accepted with 202 always ends in
// StatusSucceeded or StatusFailed.
type Status string

const (
	StatusQueued     Status = "queued"
	StatusProcessing Status = "processing"
	StatusSucceeded  Status = "succeeded"
	StatusFailed     Status = "failed"
)

// Ended reports whether the job has reached a final status.
func (s Status) Ended() bool { return s == StatusSucceeded || s == StatusFailed }

// Source says where the original image comes from.
const (
	SourceURL    = "url"
	SourceUpload = "upload"
)

// Request is what the client asked for, as validated by the API.
type Request struct {
	Source  string `json:"source"`
	URL     string `json:"url,omitempty"`
	Width   int    `json:"width,omitempty"`
	Height  int    `json:"height,omitempty"`
	Fit     string `json:"fit"`
	Enlarge bool   `json:"enlarge"`
	Format  string `json:"format"`
	Quality int    `json:"quality"`

	Email       string `json:"email,omitempty"`
	CallbackURL string `json:"callback_url,omitempty"`
}

// Result describes the thumbnail; its bytes are stored beside the record.
type Result struct {
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Format      string `json:"format"`
	ContentType string `json:"content_type"`
	Bytes       int    `json:"bytes"`
	Engine      string `json:"engine,omitempty"`
}

// Error is why a job failed: a stable code a client can switch on and a
// sentence a person can act on.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Delivery channels.
const (
	ChannelEmail    = "email"
	ChannelCallback = "callback"
)

// Delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

// Delivery is the state of one push channel of a job.
type Delivery struct {
	Channel       string     `json:"channel"`
	Target        string     `json:"target"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	LastAttemptAt *time.Time `json:"last_attempt_at,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	ErrorCode     string     `json:"error_code,omitempty"`
}

// Job is the record of one thumbnail job.
type Job struct {
	ID string `json:"id"`
	// Owner is a digest of the API key that made the job ("" when the
	// service runs open). The key itself is never stored.
	Owner  string `json:"owner,omitempty"`
	Status Status `json:"status"`

	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	HeartbeatAt *time.Time `json:"heartbeat_at,omitempty"`

	Request Request `json:"request"`

	// Attempts counts runs that started; Crashes counts runs that started
	// while an earlier run was still marked processing (its process died).
	Attempts int `json:"attempts"`
	Crashes  int `json:"crashes"`

	Result     *Result    `json:"result,omitempty"`
	Error      *Error     `json:"error,omitempty"`
	Deliveries []Delivery `json:"deliveries,omitempty"`
}

// Delivery returns the delivery for channel, or nil.
func (j *Job) Delivery(channel string) *Delivery {
	for i := range j.Deliveries {
		if j.Deliveries[i].Channel == channel {
			return &j.Deliveries[i]
		}
	}
	return nil
}

// EventType is the push event a finished job produces.
func (j *Job) EventType() string {
	if j.Status == StatusSucceeded {
		return "thumbnail.succeeded"
	}
	return "thumbnail.failed"
}

// EventID identifies the job's one final event. It is derived from the job id
// so every retry, and every re-run after a crash, carries the same id.
func (j *Job) EventID() string { return "msg_" + j.ID }
