package notifier_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/testredis"
	"github.com/thumbnailed/thumbnailed/internal/tests3"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/keys"
	"github.com/thumbnailed/thumbnailed/notifier"
	"github.com/thumbnailed/thumbnailed/webhook"
)

// Every attempt and every redelivery of a job's event sends the same
// bytes: the body is frozen in the blob store when it is first sent, so a
// notifier in another process, after the record moved on and after the
// images expired, still sends it unchanged. Receivers that dedupe on a
// body hash see repeats as repeats.
func TestTheCallbackBodyIsFrozenAtItsFirstAttempt(t *testing.T) {
	for _, backend := range []string{blob.BackendRedis, blob.BackendS3} {
		t.Run(backend, func(t *testing.T) {
			is := is.New(t)
			r := testredis.New(t)
			var blobs blob.Store // nil: the Redis one
			if backend == blob.BackendS3 {
				bucket := tests3.New(t)
				var err error
				blobs, err = blob.Open(bucket.URL, bucket.Server.Getenv, r.Pool, r.Namespace)
				is.NoErr(err)
			}
			cfg := notifier.Config{WebhookSecret: secret, CallbackSchedule: schedule("1m"), InlineMaxBytes: 1 << 20}
			e := newEnvWith(t, r, world{blobs: blobs}, cfg)
			blobs = e.blobs
			rc := receiverAnswering(t, []int{http.StatusServiceUnavailable, http.StatusNoContent}, secret)
			img := testJPEG(t, 16, 12)
			job := e.end(jobSpec{id: "job-frozen", email: "mary@example.com", hook: rc.URL,
				outputs: []output{{jobs.DefaultOutput, "jpeg", 16, 12, img}}})

			is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 1)) // 503
			e.untilDue()
			is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 2)) // delivered
			// The record moves on: the email goes out, time passes, the image expires.
			is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 1))
			e.clock.Advance(10 * time.Minute)
			is.NoErr(blobs.DeleteOne(context.Background(), job.ID, jobs.BlobName(jobs.DefaultOutput, "jpeg")))

			// The client asks for a redelivery; another process sends it.
			_, err := e.store.Redeliver(context.Background(), job.ID, jobs.ChannelCallback)
			is.NoErr(err)
			is.Equal(e.queuedDeliveries(), []jobs.Work{{Kind: jobs.ChannelCallback, JobID: job.ID, Attempt: 3}})
			e.start(cfg)
			is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 3))
			is.Equal(e.delivery(job.ID, jobs.ChannelCallback).Status, jobs.DeliveryDelivered)

			got := rc.All()
			is.Equal(len(got), 3)
			frozen, err := blobs.Get(context.Background(), job.ID, jobs.EventBlob)
			is.NoErr(err)
			for _, c := range got {
				is.True(bytes.Equal(c.Body, frozen)) // byte for byte, every time
				is.Equal(c.ID, "msg_job-frozen")
				is.NoErr(webhook.VerifyAt(secret, c.Header, c.Body, time.Hour, e.clock.Now()))
			}
			is.True(got[2].Header.Get(webhook.HeaderTimestamp) != got[0].Header.Get(webhook.HeaderTimestamp)) // signed anew
			is.True(got[2].Header.Get(webhook.HeaderSignature) != got[0].Header.Get(webhook.HeaderSignature))

			// The frozen event shows the job as it was at the first attempt,
			// the image included; the live state is in GET.
			var event testapi.Event
			is.NoErr(json.Unmarshal(frozen, &event))
			decoded, err := base64.StdEncoding.DecodeString(event.Data.Image.Base64)
			is.NoErr(err)
			is.True(bytes.Equal(decoded, img))
			for _, d := range event.Data.Deliveries {
				is.Equal(d.Status, jobs.DeliveryPending)
				if d.Channel == jobs.ChannelCallback {
					is.Equal(d.Attempts, 1)
				}
			}
		})
	}
}

// Image bytes travel in the body only when all the outputs together fit
// in InlineMaxBytes (0: links only); every output always carries its
// signed link, which opens without an API key.
func TestImagesTravelInlineOnlyWhenTheyAllFit(t *testing.T) {
	small, large := testJPEG(t, 8, 6), testPNG(t, 20, 15)
	total := int64(len(small) + len(large))
	for _, tc := range []struct {
		name   string
		limit  int64
		inline bool
	}{
		{"all fit exactly", total, true},
		{"one byte short", total - 1, false},
		{"links only", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			rc := testapi.NewReceiver(t)
			e := newEnv(t, notifier.Config{InlineMaxBytes: tc.limit})
			job := e.end(jobSpec{id: "job-inline", hook: rc.URL, outputs: []output{
				{"small", "jpeg", 8, 6, small}, {"large", "png", 20, 15, large}}})

			is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 1))
			got := rc.All()
			is.Equal(len(got), 1)
			var event testapi.Event
			is.NoErr(json.Unmarshal(got[0].Body, &event))
			res := event.Data.Result
			is.Equal(len(res.Outputs), 2)
			is.Equal(res.Outputs[0].Name, "small")
			is.Equal(res.Outputs[1].Name, "large")
			for i, o := range res.Outputs {
				verifyLink(t, e.links, job, o.Name, o.URL)
				is.Equal(o.URLExpiresAt, job.ExpiresAt.Truncate(time.Second))
				if !tc.inline {
					is.Equal(o.Base64, "")
					continue
				}
				b, err := base64.StdEncoding.DecodeString(o.Base64)
				is.NoErr(err)
				is.True(bytes.Equal(b, [][]byte{small, large}[i]))
			}
			// data.image is the first output, with the same link and bytes.
			is.Equal(event.Data.Image.URL, res.Outputs[0].URL)
			is.Equal(event.Data.Image.Base64, res.Outputs[0].Base64)
			is.Equal(event.Data.Image.ContentType, "image/jpeg")
			is.Equal(res.ImageURL, res.Outputs[0].URL)
			is.Equal(strings.Contains(string(got[0].Body), `"base64"`), tc.inline)
		})
	}
}

// A key with two webhook secrets (a rotation) signs with both: a receiver
// holding either one verifies. The key's secrets replace the service's;
// a key without secrets of its own (or no longer in the keys file) falls
// back to the service's secret.
func TestEverySecretOfTheJobsKeySigns(t *testing.T) {
	is := is.New(t)
	const (
		oldSecret     = "whsec_b2xkIHNlY3JldCBvZiBhY21lLCAzMiBieXRlcyEhISE="
		newSecret     = "whsec_bmV3IHNlY3JldCBvZiBhY21lLCAzMiBieXRlcyEhISE="
		serviceSecret = secret
	)
	set, err := keys.Parse(nil, []byte(`[
		{"name": "acme", "key": "acme-key-0123456789", "webhook_secrets": ["`+newSecret+`", "`+oldSecret+`"]},
		{"name": "solo", "key": "solo-key-0123456789"}]`))
	is.NoErr(err)
	rc := testapi.NewReceiver(t)
	e := newEnv(t, notifier.Config{})
	e.secrets = set // as the keys ring gives them
	e.start(notifier.Config{WebhookSecret: serviceSecret})

	for _, tc := range []struct {
		id, key    string
		verify     []string // each one alone verifies
		refuse     []string // none of these does
		signatures int
	}{
		{"job-acme", "acme", []string{oldSecret, newSecret}, []string{serviceSecret}, 2},
		{"job-solo", "solo", []string{serviceSecret}, []string{oldSecret, newSecret}, 1},
		{"job-gone", "gone", []string{serviceSecret}, []string{oldSecret, newSecret}, 1},
		{"job-open", "", []string{serviceSecret}, []string{oldSecret, newSecret}, 1},
	} {
		job := e.end(jobSpec{id: tc.id, keyName: tc.key, hook: rc.URL, source: jobs.SourceUpload, code: "timeout", message: "took too long"})
		is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 1))
		c := rc.For(job.ID)
		is.Equal(len(c), 1)
		is.Equal(len(strings.Fields(c[0].Header.Get(webhook.HeaderSignature))), tc.signatures) // one per secret
		for _, s := range tc.verify {
			is.NoErr(webhook.Verify(s, c[0].Header, c[0].Body, time.Minute)) // a receiver holding only s accepts
		}
		for _, s := range tc.refuse {
			is.True(errors.Is(webhook.Verify(s, c[0].Header, c[0].Body, time.Minute), webhook.ErrInvalidSignature))
		}
	}
	mustNotContain(t, e.logs.String(), "b2xkIHNlY3JldCBvZiBhY21l") // secrets never reach the logs
	mustNotContain(t, e.logs.String(), "bmV3IHNlY3JldCBvZiBhY21l")
}

// countingBlobs counts the reads of a blob store.
type countingBlobs struct {
	blob.Store
	gets atomic.Int64
}

func (c *countingBlobs) Get(ctx context.Context, job, name string) ([]byte, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, job, name)
}

// The first attempt a worker makes as the job ends (claimed in the same
// transaction, jobs.Store.Succeed with direct) sends what an attempt from
// the queue sends, without reading anything back: the body cannot be frozen
// yet, and the images are the ones just made. The body it freezes is the
// one every later attempt sends.
func TestTheFirstAttemptMadeAsTheJobEndsReadsNothingBack(t *testing.T) {
	is := is.New(t)
	r := testredis.New(t)
	plain, err := blob.Open("", nil, r.Pool, r.Namespace)
	is.NoErr(err)
	blobs := &countingBlobs{Store: plain}
	cfg := notifier.Config{WebhookSecret: secret, CallbackSchedule: schedule("1m"), InlineMaxBytes: 1 << 20}
	e := newEnvWith(t, r, world{blobs: blobs}, cfg)
	rc := receiverAnswering(t, []int{http.StatusServiceUnavailable, http.StatusNoContent}, secret)
	img := testJPEG(t, 16, 12)
	job := e.end(jobSpec{id: "job-first", hook: rc.URL, direct: []string{jobs.ChannelCallback},
		outputs: []output{{jobs.DefaultOutput, "jpeg", 16, 12, img}}})
	is.Equal(job.Delivery(jobs.ChannelCallback).Attempts, 1) // claimed by the ending
	is.Equal(len(e.queuedDeliveries()), 0)                   // not queued

	before := blobs.gets.Load()
	is.NoErr(e.n.DeliverFirst(context.Background(), jobs.ChannelCallback, job, map[string][]byte{jobs.DefaultOutput: img})) // 503
	is.Equal(blobs.gets.Load(), before)                                                                                     // no frozen body looked for, no image read back
	got := rc.All()
	is.Equal(len(got), 1)
	var ev struct {
		Data struct {
			Image struct {
				Base64 string `json:"base64"`
			} `json:"image"`
		} `json:"data"`
	}
	is.NoErr(json.Unmarshal(got[0].Body, &ev))
	is.Equal(ev.Data.Image.Base64, base64.StdEncoding.EncodeToString(img)) // the image handed over
	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(len(d.Log), 1)
	is.True(d.NextAttemptAt != nil) // the 503 scheduled the next attempt, from the queue

	e.untilDue()
	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 2)) // delivered
	got = rc.All()
	is.Equal(len(got), 2)
	is.True(bytes.Equal(got[1].Body, got[0].Body)) // the frozen body, byte for byte
	is.Equal(e.delivery(job.ID, jobs.ChannelCallback).Status, jobs.DeliveryDelivered)

	// An attempt the ending did not claim is not sent.
	other := e.end(jobSpec{id: "job-queued", hook: rc.URL, outputs: []output{{jobs.DefaultOutput, "jpeg", 16, 12, img}}})
	is.NoErr(e.n.DeliverFirst(context.Background(), jobs.ChannelCallback, other, nil))
	is.Equal(len(rc.All()), 2)
}
