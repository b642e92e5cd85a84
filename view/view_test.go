package view_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/view"
)

func at(s string) *time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return &t
}

func TestJobShowsExactlyTheDocumentedFields(t *testing.T) {
	is := is.New(t)
	job := &jobs.Job{
		ID:          "j1",
		Owner:       "digest-of-the-api-key",
		Status:      jobs.StatusSucceeded,
		CreatedAt:   *at("2025-01-02T03:04:05Z"),
		StartedAt:   at("2025-01-02T03:04:06Z"),
		FinishedAt:  at("2025-01-02T03:04:07Z"),
		HeartbeatAt: at("2025-01-02T03:04:07Z"),
		Request: jobs.Request{Source: jobs.SourceURL, URL: "https://user:pw@example.com/cat.jpg?sig=abc",
			Width: 256, Fit: "contain", Format: "jpeg", Quality: 80, Enlarge: true,
			Email: "mary@example.com", CallbackURL: "https://me.example.com/hooks?token=s3cret"},
		Attempts: 2,
		Crashes:  1,
		Result:   &jobs.Result{Width: 256, Height: 171, Format: "jpeg", ContentType: "image/jpeg", Bytes: 10342, Engine: "go"},
		Deliveries: []jobs.Delivery{
			{Channel: jobs.ChannelEmail, Target: "m***@example.com", Status: jobs.DeliveryDelivered, Attempts: 1, LastAttemptAt: at("2025-01-02T03:04:08Z")},
			{Channel: jobs.ChannelCallback, Target: "https://me.example.com/hooks", Status: jobs.DeliveryPending, Attempts: 2,
				LastAttemptAt: at("2025-01-02T03:04:09Z"), NextAttemptAt: at("2025-01-02T03:09:09Z"),
				LastError: "the receiver answered 503 Service Unavailable", ErrorCode: "internal"},
		},
	}
	b, err := json.Marshal(view.Job(job))
	is.NoErr(err)
	is.Equal(string(b), `{"id":"j1","status":"succeeded","created_at":"2025-01-02T03:04:05Z","started_at":"2025-01-02T03:04:06Z","finished_at":"2025-01-02T03:04:07Z",`+
		`"request":{"source":"url","url":"https://user:xxxxx@example.com/cat.jpg?sig=abc","width":256,"fit":"contain","format":"jpeg","quality":80},`+
		`"result":{"width":256,"height":171,"format":"jpeg","content_type":"image/jpeg","bytes":10342,"image_url":"/v1/thumbnails/j1/image","engine":"go"},`+
		`"deliveries":[{"channel":"email","target":"m***@example.com","status":"delivered","attempts":1,"last_attempt_at":"2025-01-02T03:04:08Z"},`+
		`{"channel":"callback","target":"https://me.example.com/hooks","status":"pending","attempts":2,"last_attempt_at":"2025-01-02T03:04:09Z","next_attempt_at":"2025-01-02T03:09:09Z","last_error":"the receiver answered 503 Service Unavailable"}]}`)
	for _, secret := range []string{"digest-of-the-api-key", "mary@", "s3cret", "heartbeat", "crashes", "enlarge", "pw@"} {
		is.True(!strings.Contains(string(b), secret)) // internals and secrets stay out
	}
}

func TestJobOfAFailedJobShowsTheError(t *testing.T) {
	is := is.New(t)
	job := &jobs.Job{ID: "j2", Status: jobs.StatusFailed, CreatedAt: *at("2025-01-02T03:04:05Z"),
		Request: jobs.Request{Source: jobs.SourceUpload, Height: 100, Fit: "cover", Format: "png"},
		Error:   &jobs.Error{Code: "corrupt_image", Message: "the image data is damaged"}}
	b, err := json.Marshal(view.Job(job))
	is.NoErr(err)
	is.Equal(string(b), `{"id":"j2","status":"failed","created_at":"2025-01-02T03:04:05Z",`+
		`"request":{"source":"upload","height":100,"fit":"cover","format":"png","quality":0},`+
		`"error":{"code":"corrupt_image","message":"the image data is damaged"}}`)
}

func TestDeliveryTargetsAreMaskedEvenIfStoredRaw(t *testing.T) {
	is := is.New(t)
	job := &jobs.Job{ID: "j3", Status: jobs.StatusQueued, Deliveries: []jobs.Delivery{
		{Channel: jobs.ChannelEmail, Target: "mary@Example.COM", Status: jobs.DeliveryPending},
		{Channel: jobs.ChannelCallback, Target: "https://u:p@me.example.com/hooks?token=x#f", Status: jobs.DeliveryPending},
	}}
	v := view.Job(job)
	is.Equal(v.Deliveries[0].Target, "m***@example.com")
	is.Equal(v.Deliveries[1].Target, "https://me.example.com/hooks")
}

func TestMaskEmail(t *testing.T) {
	is := is.New(t)
	is.Equal(view.MaskEmail("mary@example.com"), "m***@example.com")
	is.Equal(view.MaskEmail("m***@example.com"), "m***@example.com") // idempotent
	is.Equal(view.MaskEmail("élodie@Exemple.FR"), "é***@exemple.fr")
	is.Equal(view.MaskEmail("not-an-address"), "***")
	is.Equal(view.MaskEmail("@example.com"), "***")
	is.Equal(view.MaskEmail("mary@"), "***")
	is.Equal(view.MaskEmail(""), "") // no address: nothing to mask
	is.Equal(view.MaskEmail("m@x\r\nBcc: a@b"), "***")
}

func TestMaskURL(t *testing.T) {
	is := is.New(t)
	is.Equal(view.MaskURL("https://user:pass@me.example.com:8443/hooks/thumbs?token=s3cret#frag"), "https://me.example.com:8443/hooks/thumbs")
	is.Equal(view.MaskURL("https://me.example.com/hooks/thumbs"), "https://me.example.com/hooks/thumbs") // idempotent
	is.Equal(view.MaskURL("http://[::1]:8080"), "http://[::1]:8080")
	is.Equal(view.MaskURL("/relative/path"), "")
	is.Equal(view.MaskURL("::not a url"), "")
}

func TestValidEmail(t *testing.T) {
	for _, ok := range []string{"me@example.com", "first.last+tag@sub.example.co.uk", "me@localhost"} {
		t.Run(ok, func(t *testing.T) {
			is.New(t).NoErr(view.ValidEmail(ok))
		})
	}
	for _, bad := range []string{
		"",
		"me",
		"me@",
		"@example.com",
		"Mary <me@example.com>",
		"<me@example.com>",
		"me@example.com (Mary)",
		"me@example.com\r\nBcc: victim@example.org",
		"me@example.com\nSubject: hi",
		"me@example.com\r",
		" me@example.com",
		"me@example.com,you@example.com",
		`"me you"@example.com`,
		"me@.example.com",
		strings.Repeat("a", 250) + "@example.com",
	} {
		t.Run(bad, func(t *testing.T) {
			is.New(t).True(view.ValidEmail(bad) != nil)
		})
	}
}

func TestNewEventCarriesTheJobAndTheImage(t *testing.T) {
	is := is.New(t)
	job := &jobs.Job{ID: "j1", Status: jobs.StatusSucceeded, CreatedAt: *at("2025-01-02T03:04:05Z"), FinishedAt: at("2025-01-02T03:04:07Z"),
		Request: jobs.Request{Source: jobs.SourceUpload, Width: 2, Fit: "contain", Format: "png", Quality: 80},
		Result:  &jobs.Result{Width: 2, Height: 1, Format: "png", ContentType: "image/png", Bytes: 3}}
	b, err := json.Marshal(view.NewEvent(job, []byte{1, 2, 3}))
	is.NoErr(err)
	is.Equal(string(b), `{"type":"thumbnail.succeeded","timestamp":"2025-01-02T03:04:07Z","data":{"id":"j1","status":"succeeded",`+
		`"created_at":"2025-01-02T03:04:05Z","finished_at":"2025-01-02T03:04:07Z",`+
		`"request":{"source":"upload","width":2,"fit":"contain","format":"png","quality":80},`+
		`"result":{"width":2,"height":1,"format":"png","content_type":"image/png","bytes":3,"image_url":"/v1/thumbnails/j1/image"},`+
		`"image":{"content_type":"image/png","base64":"AQID"}}}`)

	job.Status, job.Result, job.Error = jobs.StatusFailed, nil, &jobs.Error{Code: "timeout", Message: "too slow"}
	e := view.NewEvent(job, nil)
	is.Equal(e.Type, "thumbnail.failed")
	is.Equal(e.Data.Image, nil)
	is.Equal(e.Data.Error.Code, "timeout")
}
