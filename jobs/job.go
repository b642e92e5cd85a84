// Package jobs owns the job record and everything the service keeps in Redis
// about jobs: the record itself, idempotency keys, the leases of running work,
// the schedule of work due later, the per-client index, rate limits and email
// counts. It is the only package that knows these Redis keys; the work queue's
// own format comes from its Queue (the worker package's gocraft/work entries).
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

// Point is a focal point: fractions of the upright source, 0..1.
type Point struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// Output is one image a job makes, with every default filled in.
type Output struct {
	Name    string `json:"name"`
	Width   int    `json:"width,omitempty"`
	Height  int    `json:"height,omitempty"`
	Fit     string `json:"fit"`
	Enlarge bool   `json:"enlarge"`
	Gravity string `json:"gravity"`
	Focal   *Point `json:"focal,omitempty"`
	Format  string `json:"format"`
	Quality int    `json:"quality"`
}

// DefaultOutput is the name of the one output of a job that asks for none.
const DefaultOutput = "default"

// Request is what the client asked for, as validated by the API.
type Request struct {
	Source  string `json:"source"`
	URL     string `json:"url,omitempty"`
	Width   int    `json:"width,omitempty"`
	Height  int    `json:"height,omitempty"`
	Fit     string `json:"fit"`
	Enlarge bool   `json:"enlarge"`
	Gravity string `json:"gravity,omitempty"`
	Focal   *Point `json:"focal,omitempty"`
	Format  string `json:"format"`
	Quality int    `json:"quality"`
	// Outputs are the images to make: the client's list, or one named
	// DefaultOutput made from the fields above.
	Outputs []Output `json:"outputs"`

	Email       string `json:"email,omitempty"`
	CallbackURL string `json:"callback_url,omitempty"`
}

// OutputResult describes one image a succeeded job made; its bytes are in
// the blob store.
type OutputResult struct {
	Name        string `json:"name"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Format      string `json:"format"`
	ContentType string `json:"content_type"`
	Bytes       int    `json:"bytes"`
	// ETag is a digest of the bytes, so serving them needs no hashing.
	ETag string `json:"etag"`
}

// Blob names of a job's bytes in the blob store.
const (
	UploadBlob = "upload"        // the uploaded original, until the job ends
	EventBlob  = "callback.json" // the callback's body, frozen when first sent
)

// BlobMargin is how much longer than its job's record a blob may live: a
// blob store with native expiry is told the record's expiry plus this, as
// an upper bound. The sweeper deletes a job's blobs when its record goes.
const BlobMargin = time.Hour

// BlobName is the blob name of an output: its name and its format's extension.
func BlobName(output, format string) string {
	return output + map[string]string{"jpeg": ".jpg", "png": ".png", "webp": ".webp"}[format]
}

// Blob is the blob name of the output's bytes.
func (o OutputResult) Blob() string { return BlobName(o.Name, o.Format) }

// Placeholder is what a page shows while the images load.
type Placeholder struct {
	BlurHash      string `json:"blurhash"`
	DominantColor string `json:"dominant_color"`
}

// Result is what a succeeded job made.
type Result struct {
	Outputs     []OutputResult `json:"outputs"`
	Placeholder *Placeholder   `json:"placeholder,omitempty"`
	Engine      string         `json:"engine,omitempty"`
}

// Output returns the result of the output named name, or nil.
func (r *Result) Output(name string) *OutputResult {
	if r == nil {
		return nil
	}
	for i := range r.Outputs {
		if r.Outputs[i].Name == name {
			return &r.Outputs[i]
		}
	}
	return nil
}

// Error is why a job failed: a stable code a client can switch on (package
// codes lists them) and a sentence a person can act on.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Delivery channels.
const (
	ChannelEmail    = "email"
	ChannelCallback = "callback"
)

// Channels lists every delivery channel.
var Channels = []string{ChannelEmail, ChannelCallback}

// Delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

// Attempt outcomes in a delivery's log.
const (
	OutcomeDelivered = "delivered"
	OutcomeRetry     = "retry"
	OutcomeFailed    = "failed"
)

// LogEntry is one attempt of a delivery, as the client sees it.
type LogEntry struct {
	Attempt    int       `json:"attempt"`
	At         time.Time `json:"at"`
	DurationMS int64     `json:"duration_ms"`
	Outcome    string    `json:"outcome"`
	StatusCode int       `json:"status_code,omitempty"` // HTTP status or SMTP reply code
	Error      string    `json:"error,omitempty"`
	Response   string    `json:"response,omitempty"` // the first bytes of the receiver's answer
}

// MaxLog is how many attempts a delivery's log keeps, newest last.
const MaxLog = 20

// Delivery is the state of one push channel of a job. Its target (the
// address or URL) is in the Request; it is shown masked.
type Delivery struct {
	Channel       string     `json:"channel"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	LastAttemptAt *time.Time `json:"last_attempt_at,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	ErrorCode     string     `json:"error_code,omitempty"`
	// SeriesStart is the attempt number the current series of attempts began
	// with: 1, or the first attempt after a redelivery. The retry schedule
	// counts from it.
	SeriesStart int        `json:"series_start"`
	Log         []LogEntry `json:"log,omitempty"`
}

// Job is the record of one thumbnail job.
type Job struct {
	ID string `json:"id"`
	// Owner is a digest of the API key that made the job ("" when the
	// service runs open): another key sees the job as not found. The key
	// itself is never stored.
	Owner string `json:"owner,omitempty"`
	// KeyName is the name of that key (from the keys file), for logs and
	// operators; never the key.
	KeyName string `json:"key_name,omitempty"`
	// Client is the scope that lists the job: "key:{owner}" or "ip:{address}".
	Client string `json:"client"`
	Status Status `json:"status"`
	// Version grows with every change of the record; events carry it.
	Version int `json:"version"`

	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// ExpiresAt is when the record and its images go: the result TTL after
	// the job ended. Until then the job keeps its promise to run however
	// long it waits, within MaxWait.
	ExpiresAt time.Time `json:"expires_at"`

	Request Request `json:"request"`

	// Attempts counts runs that started; Crashes counts runs whose process
	// died (their lease expired); Retries counts runs that failed
	// transiently and were scheduled again.
	Attempts int `json:"attempts"`
	Crashes  int `json:"crashes"`
	Retries  int `json:"retries"`

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

// Target is where a delivery goes, unmasked: for the notifier only.
func (j *Job) Target(channel string) string {
	switch channel {
	case ChannelEmail:
		return j.Request.Email
	case ChannelCallback:
		return j.Request.CallbackURL
	}
	return ""
}

// work is a piece of the job's work for the queue: its run (attempt 0) or
// an attempt of a delivery.
func (j *Job) work(kind string, attempt int) Work {
	return Work{Kind: kind, JobID: j.ID, Attempt: attempt, KeyName: j.KeyName}
}

// EventType is the push event a finished job produces.
func (j *Job) EventType() string {
	if j.Status == StatusSucceeded {
		return "thumbnail.succeeded"
	}
	return "thumbnail.failed"
}

// EventID identifies the job's one final event. It is derived from the job id
// so every retry, re-run and redelivery carries the same id.
func (j *Job) EventID() string { return "msg_" + j.ID }

// Owner says who makes a job.
type Owner struct {
	Digest  string // of the API key; "" when the service is open
	KeyName string
	Client  string // the listing scope
}

// MaxWait bounds how long the record of a job that has not ended is kept:
// an accepted job runs whenever a worker gets to it (a queue stopped for a
// weekend included), and a record that could never end still goes.
const MaxWait = 7 * 24 * time.Hour

// New is the record of a job just accepted: queued, with a delivery for
// every channel the request names. It is the one place a record is built.
func New(id string, owner Owner, req Request, now time.Time, ttl time.Duration) *Job {
	job := &Job{
		ID:        id,
		Owner:     owner.Digest,
		KeyName:   owner.KeyName,
		Client:    owner.Client,
		Status:    StatusQueued,
		CreatedAt: now.UTC(),
		ExpiresAt: now.UTC().Add(MaxWait + ttl),
		Request:   req,
	}
	for _, ch := range Channels {
		if job.Target(ch) != "" {
			job.Deliveries = append(job.Deliveries, Delivery{Channel: ch, Status: DeliveryPending, SeriesStart: 1})
		}
	}
	return job
}
