package notifier_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/testlog"
	"github.com/thumbnailed/thumbnailed/internal/testredis"
	"github.com/thumbnailed/thumbnailed/internal/testsmtp"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/notifier"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/thumbnail"
	"github.com/thumbnailed/thumbnailed/worker"
)

// The deliveries run in a real worker, from the real queue: the first
// attempts are queued when the job ends, a retry goes through the due set
// at its time, and a delivery that fails for good lands in gocraft/work's
// dead set, marked for redelivery, without the address.
func TestDeliveriesRunInAWorker(t *testing.T) {
	is := is.New(t)
	sink := testsmtp.New(t)
	sink.SetReply(testsmtp.PermanentFailure)
	rc := receiverAnswering(t, []int{http.StatusServiceUnavailable, http.StatusOK}, secret)

	r := testredis.New(t)
	e := newEnvWith(t, r, world{queue: worker.NewQueue(r.Namespace), lease: 3 * time.Second, realTime: true},
		notifier.Config{SMTP: smtpConfig(t, sink), CallbackSchedule: schedule("1s"), WebhookSecret: secret})

	logs := &testlog.Buffer{}
	w := worker.New(slog.New(slog.NewJSONHandler(logs, nil)),
		worker.Config{Namespace: r.Namespace, Concurrency: 2, JobTimeout: 10 * time.Second, StaleAfter: 3 * time.Second,
			WakeOnEnqueue: true, ResultTTL: ttl},
		worker.Redis{Pool: r.Pool, Dial: func(ctx context.Context) (redis.Conn, error) { return redis.DialURLContext(ctx, r.URL) }},
		e.store, safehttp.New(safehttp.Options{}), e.blobs, e.n, thumbnail.Default, nil)
	w.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
	})

	// An ended job: its thumbnail run (queued by the submit) finds it ended
	// and skips; the job's end queued both deliveries.
	job := e.failedJob("job-pool", mary, rc.URL, "timeout", "took too long")

	var cb, em jobs.Delivery
	ok := testapi.Eventually(20*time.Second, func() bool {
		cb, em = e.delivery(job.ID, jobs.ChannelCallback), e.delivery(job.ID, jobs.ChannelEmail)
		return cb.Status != jobs.DeliveryPending && em.Status != jobs.DeliveryPending
	})
	if !ok {
		t.Fatalf("deliveries still pending: callback %+v, email %+v", cb, em)
	}
	is.Equal(cb.Status, jobs.DeliveryDelivered)
	is.Equal(cb.Attempts, 2) // the 503, then the retry a second later
	got := rc.For(job.ID)
	is.Equal(len(got), 2)
	gap := got[1].Received.Sub(got[0].Received)
	is.True(gap >= time.Second && gap < 2*time.Second) // the schedule's time, within a second
	for _, c := range got {
		is.True(c.Signed)
	}
	is.Equal(em.Status, jobs.DeliveryFailed)
	is.Equal(em.ErrorCode, codes.RecipientRejected)

	// The failed email is in the dead set, where operators look, marked so
	// that the web UI's retry redelivers it.
	var dead []deadEntry
	ok = testapi.Eventually(10*time.Second, func() bool {
		dead = deadSet(t, r)
		return len(dead) > 0
	})
	is.True(ok)
	is.Equal(len(dead), 1)
	is.Equal(dead[0].Name, worker.TypeDeliverEmail)
	is.Equal(dead[0].Args["redeliver"], "1")
	mustContain(t, dead[0].Err, codes.RecipientRejected)
	mustNotContain(t, dead[0].Err, mary)
	mustNotContain(t, logs.String(), mary)
}

// deadEntry is what the test reads of a gocraft/work dead-set entry (the
// library's job JSON).
type deadEntry struct {
	Name string         `json:"name"`
	Args map[string]any `json:"args"`
	Err  string         `json:"err"`
}

func deadSet(t *testing.T, r *testredis.Redis) []deadEntry {
	t.Helper()
	conn := r.Pool.Get()
	defer conn.Close()
	raw, err := redis.Strings(conn.Do("ZRANGE", r.Namespace+":dead", 0, -1))
	if err != nil {
		t.Fatalf("dead set: %v", err)
	}
	var out []deadEntry
	for _, s := range raw {
		var d deadEntry
		if err := json.Unmarshal([]byte(s), &d); err != nil {
			t.Fatalf("dead entry %q: %v", s, err)
		}
		out = append(out, d)
	}
	return out
}
