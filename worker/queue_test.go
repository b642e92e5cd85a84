package worker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/jobs"
)

// The queue's entries are gocraft/work's own: the library runs them, and its
// web UI shows their arguments to operators, the key's name among them.
func TestQueueEntriesAreGocraftJobs(t *testing.T) {
	is := is.New(t)
	q := Queue{ns: "ns", now: func() time.Time { return time.Unix(1700000000, 0) }}
	for _, tc := range []struct {
		work jobs.Work
		list string
		args map[string]any
	}{
		{jobs.Work{Kind: jobs.KindThumbnail, JobID: "j1"}, "ns:jobs:thumbnail", map[string]any{"job_id": "j1"}},
		{jobs.Work{Kind: jobs.ChannelCallback, JobID: "j1", Attempt: 3, KeyName: "acme"}, "ns:jobs:deliver_callback",
			map[string]any{"job_id": "j1", "attempt": "3", "key_name": "acme"}},
		{jobs.Work{Kind: jobs.ChannelEmail, JobID: "j1", Attempt: 2, Redeliver: true}, "ns:jobs:deliver_email",
			map[string]any{"job_id": "j1", "attempt": "2", "redeliver": "1"}},
	} {
		p := q.Entry(tc.work)
		is.Equal(p.List, tc.list)
		var e entry
		is.NoErr(json.Unmarshal([]byte(p.Payload), &e))
		is.Equal(e.Name, typeOfKind[tc.work.Kind])
		is.Equal(len(e.ID), 24) // as gocraft/work makes its ids
		is.Equal(e.EnqueuedAt, int64(1700000000))
		is.Equal(e.Args, tc.args)
	}
	a, b := q.Entry(jobs.Work{Kind: jobs.KindThumbnail, JobID: "j1"}), q.Entry(jobs.Work{Kind: jobs.KindThumbnail, JobID: "j1"})
	is.True(a.Payload != b.Payload) // every entry is its own, even for the same work
}
