package worker

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	"github.com/thumbnailed/thumbnailed/jobs"
)

// gocraft/work job types. Every worker process registers all of them:
// gocraft/work moves a job of a type its pool does not know to the dead set.
const (
	TypeThumbnail       = "thumbnail"
	TypeDeliverEmail    = "deliver_email"
	TypeDeliverCallback = "deliver_callback"
)

// Job arguments. Ids travel as strings: gocraft/work turns numbers in args
// into float64.
const (
	argJobID     = "job_id"
	argAttempt   = "attempt"
	argRedeliver = "redeliver"
	argKeyName   = "key_name" // for operators reading the web UI
)

var jobTypes = []string{TypeThumbnail, TypeDeliverEmail, TypeDeliverCallback}

var typeOfKind = map[string]string{
	jobs.KindThumbnail:   TypeThumbnail,
	jobs.ChannelEmail:    TypeDeliverEmail,
	jobs.ChannelCallback: TypeDeliverCallback,
}

var kindOfType = map[string]string{
	TypeThumbnail:       jobs.KindThumbnail,
	TypeDeliverEmail:    jobs.ChannelEmail,
	TypeDeliverCallback: jobs.ChannelCallback,
}

// Queue writes work as gocraft/work queue entries, so that the job store
// can queue work inside its own transactions (jobs.Queue). It is the only
// place that knows the library's entry format.
type Queue struct {
	ns  string
	now func() time.Time
}

// NewQueue returns the Queue of namespace.
func NewQueue(namespace string) Queue { return Queue{ns: namespace, now: time.Now} }

// entry is gocraft/work's job as it stores it (work.Job's JSON).
type entry struct {
	Name       string         `json:"name"`
	ID         string         `json:"id"`
	EnqueuedAt int64          `json:"t"`
	Args       map[string]any `json:"args"`
	Fails      int64          `json:"fails,omitempty"`
	LastErr    string         `json:"err,omitempty"`
	FailedAt   int64          `json:"failed_at,omitempty"`
}

// Entry is w as a gocraft/work job on its queue.
func (q Queue) Entry(w jobs.Work) jobs.Push {
	name := typeOfKind[w.Kind]
	args := map[string]any{argJobID: w.JobID}
	if w.Attempt > 0 {
		args[argAttempt] = strconv.Itoa(w.Attempt)
	}
	if w.Redeliver {
		args[argRedeliver] = "1"
	}
	if w.KeyName != "" {
		args[argKeyName] = w.KeyName
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	payload, _ := json.Marshal(entry{Name: name, ID: hex.EncodeToString(id), EnqueuedAt: q.now().Unix(), Args: args})
	return jobs.Push{List: q.list(name), Payload: string(payload)}
}

// dead is w as an entry of gocraft/work's dead set (key and member), failed
// with reason, the way the library writes a job that failed for good.
func (q Queue) dead(w jobs.Work, reason string) (key, member string) {
	var e entry
	_ = json.Unmarshal([]byte(q.Entry(w).Payload), &e)
	now := q.now().Unix()
	e.Fails, e.LastErr, e.FailedAt = 1, reason, now
	b, _ := json.Marshal(e)
	return q.ns + ":dead", string(b)
}

// list is gocraft/work's queue of a job type.
func (q Queue) list(jobType string) string { return q.ns + ":jobs:" + jobType }
