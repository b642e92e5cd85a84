package view_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/view"
)

func at(s string) *time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return &t
}

var links = view.Links{Base: "https://thumbs.example.com", Secret: []byte("a link secret of 32 bytes, ok!!!")}

// signed is the documented signed link, computed here on its own: HMAC-SHA256
// over "{id}/{name}/{expires}", base64url without padding.
func signed(base, id, name string, expires time.Time) string {
	mac := hmac.New(sha256.New, links.Secret)
	fmt.Fprintf(mac, "%s/%s/%d", id, name, expires.Unix())
	return fmt.Sprintf("%s/v1/thumbnails/%s/outputs/%s?expires=%d&signature=%s",
		base, id, name, expires.Unix(), base64.RawURLEncoding.EncodeToString(mac.Sum(nil)))
}

// inJSON is s as encoding/json writes it inside a string ('&' escaped).
func inJSON(s string) string { return strings.ReplaceAll(s, "&", `\u0026`) }

func succeededJob() *jobs.Job {
	out := func(name string, w int, format string) jobs.Output {
		return jobs.Output{Name: name, Width: w, Fit: "contain", Enlarge: true, Gravity: "center", Format: format, Quality: 80}
	}
	return &jobs.Job{
		ID:         "j1",
		Owner:      "digest-of-the-api-key",
		KeyName:    "acme-production",
		Client:     "key:digest-of-the-api-key",
		Status:     jobs.StatusSucceeded,
		Version:    9,
		CreatedAt:  *at("2025-01-02T03:04:05Z"),
		StartedAt:  at("2025-01-02T03:04:06Z"),
		FinishedAt: at("2025-01-02T03:04:07Z"),
		ExpiresAt:  *at("2025-01-03T03:04:07.5Z"),
		Request: jobs.Request{Source: jobs.SourceURL, URL: "https://user:pw@example.com/cat.jpg?sig=abc",
			Width: 256, Fit: "contain", Enlarge: true, Gravity: "center", Format: "jpeg", Quality: 80,
			Outputs: []jobs.Output{out("default", 256, "jpeg"), out("large", 512, "jpeg"), out("small", 256, "webp")},
			Email:   "mary@example.com", CallbackURL: "https://me.example.com/hooks?token=s3cret"},
		Attempts: 2,
		Crashes:  1,
		Retries:  1,
		Result: &jobs.Result{Outputs: []jobs.OutputResult{
			{Name: "default", Width: 256, Height: 171, Format: "jpeg", ContentType: "image/jpeg", Bytes: 10342, ETag: "etag-default"},
			{Name: "large", Width: 512, Height: 342, Format: "jpeg", ContentType: "image/jpeg", Bytes: 30001, ETag: "etag-large"},
			{Name: "small", Width: 256, Height: 171, Format: "webp", ContentType: "image/webp", Bytes: 8000, ETag: "etag-small"},
		}, Placeholder: &jobs.Placeholder{BlurHash: "LEHV6nWB2yk8pyo0adR*.7kCMdnj", DominantColor: "#7a5c3e"}, Engine: "go"},
		Deliveries: []jobs.Delivery{
			{Channel: jobs.ChannelEmail, Status: jobs.DeliveryDelivered, Attempts: 1, LastAttemptAt: at("2025-01-02T03:04:08Z"), SeriesStart: 1,
				Log: []jobs.LogEntry{{Attempt: 1, At: *at("2025-01-02T03:04:08Z"), DurationMS: 120, Outcome: jobs.OutcomeDelivered}}},
			{Channel: jobs.ChannelCallback, Status: jobs.DeliveryFailed, Attempts: 2, LastAttemptAt: at("2025-01-02T03:09:09Z"), SeriesStart: 1,
				LastError: "gave up after 2 attempts; the last one failed: the receiver answered 503 Service Unavailable", ErrorCode: "retries_exhausted",
				Log: []jobs.LogEntry{
					{Attempt: 1, At: *at("2025-01-02T03:04:09Z"), DurationMS: 35, Outcome: jobs.OutcomeRetry, StatusCode: 503,
						Error: "the receiver answered 503 Service Unavailable", Response: "busy"},
					{Attempt: 2, At: *at("2025-01-02T03:09:09Z"), DurationMS: 41, Outcome: jobs.OutcomeFailed, StatusCode: 503,
						Error: "gave up after 2 attempts; the last one failed: the receiver answered 503 Service Unavailable"},
				}},
		},
	}
}

func TestJobShowsExactlyTheDocumentedFields(t *testing.T) {
	is := is.New(t)
	job := succeededJob()
	expires := *at("2025-01-03T03:04:07Z")
	def, large, small := signed(links.Base, "j1", "default", expires), signed(links.Base, "j1", "large", expires), signed(links.Base, "j1", "small", expires)

	b, err := json.Marshal(view.Job(job, links))
	is.NoErr(err)
	output := func(name string, w, h int, format, url string, bytes int) string {
		return fmt.Sprintf(`{"name":"%s","width":%d,"height":%d,"format":"%s","content_type":"image/%s","bytes":%d,"url":"%s","url_expires_at":"2025-01-03T03:04:07Z"}`,
			name, w, h, format, format, bytes, inJSON(url))
	}
	is.Equal(string(b), `{"id":"j1","status":"succeeded","created_at":"2025-01-02T03:04:05Z","started_at":"2025-01-02T03:04:06Z","finished_at":"2025-01-02T03:04:07Z",`+
		`"request":{"source":"url","url":"https://user:xxxxx@example.com/cat.jpg?sig=abc","width":256,"fit":"contain","gravity":"center","format":"jpeg","quality":80,"outputs":[`+
		`{"name":"default","width":256,"fit":"contain","enlarge":true,"gravity":"center","format":"jpeg","quality":80},`+
		`{"name":"large","width":512,"fit":"contain","enlarge":true,"gravity":"center","format":"jpeg","quality":80},`+
		`{"name":"small","width":256,"fit":"contain","enlarge":true,"gravity":"center","format":"webp","quality":80}]},`+
		`"result":{"width":256,"height":171,"format":"jpeg","content_type":"image/jpeg","bytes":10342,"image_url":"`+inJSON(def)+`","engine":"go",`+
		`"outputs":[`+output("default", 256, 171, "jpeg", def, 10342)+`,`+output("large", 512, 342, "jpeg", large, 30001)+`,`+output("small", 256, 171, "webp", small, 8000)+`],`+
		`"srcset":{"jpeg":"`+inJSON(def)+` 256w, `+inJSON(large)+` 512w"},`+
		`"placeholder":{"blurhash":"LEHV6nWB2yk8pyo0adR*.7kCMdnj","dominant_color":"#7a5c3e"}},`+
		`"deliveries":[{"channel":"email","target":"m***@example.com","status":"delivered","attempts":1,"last_attempt_at":"2025-01-02T03:04:08Z",`+
		`"log":[{"attempt":1,"at":"2025-01-02T03:04:08Z","duration_ms":120,"outcome":"delivered"}]},`+
		`{"channel":"callback","target":"https://me.example.com/hooks","status":"failed","attempts":2,"last_attempt_at":"2025-01-02T03:09:09Z",`+
		`"last_error":"gave up after 2 attempts; the last one failed: the receiver answered 503 Service Unavailable","error_code":"retries_exhausted",`+
		`"log":[{"attempt":1,"at":"2025-01-02T03:04:09Z","duration_ms":35,"outcome":"retry","status_code":503,"error":"the receiver answered 503 Service Unavailable","response":"busy"},`+
		`{"attempt":2,"at":"2025-01-02T03:09:09Z","duration_ms":41,"outcome":"failed","status_code":503,"error":"gave up after 2 attempts; the last one failed: the receiver answered 503 Service Unavailable"}]}]}`)
	// Internals and secrets stay out: the owner, the key's name, the
	// client scope, the full address, the callback URL's query, the source's
	// password, the worker's counters, the record's version and expiry,
	// the digests, the delivery series. (enlarge is shown per output, as
	// asked; the top-level request field is not part of the view.)
	for _, secret := range []string{"digest-of-the-api-key", "acme-production", "key:", "mary@", "s3cret", "pw@", "heartbeat",
		`"crashes":`, `"retries":`, `"version":`, `"expires_at":`, `"client":`, "etag", "series_start", "base64"} {
		is.True(!strings.Contains(string(b), secret))
	}
}

func TestJobOfAFailedJobShowsTheError(t *testing.T) {
	is := is.New(t)
	job := &jobs.Job{ID: "j2", Status: jobs.StatusFailed, CreatedAt: *at("2025-01-02T03:04:05Z"),
		Request: jobs.Request{Source: jobs.SourceUpload, Height: 100, Fit: "cover", Format: "png"},
		Error:   &jobs.Error{Code: "corrupt_image", Message: "the image data is damaged"}}
	b, err := json.Marshal(view.Job(job, links))
	is.NoErr(err)
	is.Equal(string(b), `{"id":"j2","status":"failed","created_at":"2025-01-02T03:04:05Z",`+
		`"request":{"source":"upload","height":100,"fit":"cover","format":"png","quality":0},`+
		`"error":{"code":"corrupt_image","message":"the image data is damaged"}}`)
}

func TestOnlyASucceededJobWithOutputsHasAResult(t *testing.T) {
	is := is.New(t)
	job := succeededJob()
	job.Status = jobs.StatusProcessing // a result left over from a run that is being redone
	is.Equal(view.Job(job, links).Result, nil)
	job.Status, job.Result = jobs.StatusSucceeded, &jobs.Result{}
	is.Equal(view.Job(job, links).Result, nil) // no outputs: nothing to describe (and no panic)
	job.Status, job.Result, job.Error = jobs.StatusSucceeded, nil, &jobs.Error{Code: "timeout", Message: "x"}
	v := view.Job(job, links)
	is.Equal(v.Result, nil)
	is.Equal(v.Error, nil) // a succeeded job shows no error
}

func TestDeliveryTargetsAreMaskedFromTheRequest(t *testing.T) {
	is := is.New(t)
	job := jobs.New("j3", jobs.Owner{}, jobs.Request{Source: jobs.SourceUpload,
		Email: "mary@Example.COM", CallbackURL: "https://u:p@me.example.com/hooks?token=x#f"}, time.Now(), time.Hour)
	v := view.Job(job, links)
	is.Equal(len(v.Deliveries), 2)
	is.Equal(v.Deliveries[0].Channel, jobs.ChannelEmail)
	is.Equal(v.Deliveries[0].Target, "m***@example.com")
	is.Equal(v.Deliveries[1].Target, "https://me.example.com/hooks")
	is.Equal(view.Delivery(job, job.Deliveries[1]), v.Deliveries[1]) // one view of a delivery, for events too
}

func TestSrcsetListsEachFormatWithTwoOrMoreWidths(t *testing.T) {
	is := is.New(t)
	job := succeededJob()
	job.Result.Outputs = []jobs.OutputResult{
		{Name: "l", Width: 1024, Height: 683, Format: "webp"},
		{Name: "m", Width: 512, Height: 342, Format: "webp"},
		{Name: "m2", Width: 512, Height: 512, Format: "webp"}, // a width already listed
		{Name: "s", Width: 128, Height: 85, Format: "webp"},
		{Name: "j", Width: 512, Height: 342, Format: "jpeg"}, // one width only
		{Name: "p1", Width: 64, Height: 64, Format: "png"},
		{Name: "p2", Width: 64, Height: 32, Format: "png"}, // two outputs, one width
	}
	expires := *at("2025-01-03T03:04:07Z")
	link := func(name string) string { return signed(links.Base, "j1", name, expires) }
	is.Equal(view.Job(job, links).Result.Srcset, map[string]string{
		"webp": link("s") + " 128w, " + link("m") + " 512w, " + link("l") + " 1024w", // narrowest first
	})
	job.Result.Outputs = job.Result.Outputs[4:5]
	is.Equal(view.Job(job, links).Result.Srcset, nil)
}

func TestLinksAreSignedAndExpire(t *testing.T) {
	is := is.New(t)
	expires := time.Date(2025, 1, 3, 3, 4, 7, 0, time.UTC)
	link := links.Output("j1", "default", expires)
	is.Equal(link, signed(links.Base, "j1", "default", expires)) // the documented form
	sig := link[strings.LastIndex(link, "=")+1:]
	exp := "1735873447"
	before := expires.Add(-time.Second)

	is.NoErr(links.Verify("j1", "default", exp, sig, before))
	is.Equal(links.Verify("j1", "default", exp, sig, expires), view.ErrLinkExpired) // expires is the first second it no longer opens
	is.Equal(links.Verify("j2", "default", exp, sig, before), view.ErrLinkInvalid)  // another job
	is.Equal(links.Verify("j1", "large", exp, sig, before), view.ErrLinkInvalid)    // another output
	is.Equal(links.Verify("j1", "default", "1735873448", sig, before), view.ErrLinkInvalid)
	is.Equal(links.Verify("j1", "default", exp, sig+"A", before), view.ErrLinkInvalid)
	is.Equal(links.Verify("j1", "default", exp, "", before), view.ErrLinkInvalid)
	other := view.Links{Secret: []byte("another secret of 32 bytes, ok!!")}
	is.Equal(other.Verify("j1", "default", exp, sig, before), view.ErrLinkInvalid)
	// A forged link is invalid, not expired, whatever its expiry says.
	is.Equal(links.Verify("j1", "default", "1", "forged", before), view.ErrLinkInvalid)
	// Without a secret nothing verifies, not even a link signed with none.
	none := view.Links{}
	is.Equal(none.Verify("j1", "default", exp, sig, before), view.ErrLinkInvalid)
	noneSig := none.Output("j1", "default", expires)
	is.Equal(none.Verify("j1", "default", exp, noneSig[strings.LastIndex(noneSig, "=")+1:], before), view.ErrLinkInvalid)

	// Without a public URL links are paths; a base's trailing slash is not doubled.
	is.Equal(view.Links{Secret: links.Secret}.Output("j1", "default", expires), signed("", "j1", "default", expires))
	is.Equal(view.Links{Base: links.Base + "/", Secret: links.Secret}.Output("j1", "default", expires), link)
	// Ids and names are path-escaped.
	is.True(strings.HasPrefix(links.Output("a b/c", "x", expires), "https://thumbs.example.com/v1/thumbnails/a%20b%2Fc/outputs/x?"))
}

// MaskEmail and MaskURL keep what may be shown of an address and of a callback
// URL; each is idempotent.
func TestMasks(t *testing.T) {
	is := is.New(t)
	for _, tt := range []struct {
		mask     func(string) string
		in, want string
	}{
		{view.MaskEmail, "mary@example.com", "m***@example.com"},
		{view.MaskEmail, "m***@example.com", "m***@example.com"}, // idempotent
		{view.MaskEmail, "élodie@Exemple.FR", "é***@exemple.fr"},
		{view.MaskEmail, "not-an-address", "***"},
		{view.MaskEmail, "@example.com", "***"},
		{view.MaskEmail, "mary@", "***"},
		{view.MaskEmail, "", ""}, // no address: nothing to mask
		{view.MaskEmail, "m@x\r\nBcc: a@b", "***"},
		{view.MaskURL, "https://user:pass@me.example.com:8443/hooks/thumbs?token=s3cret#frag", "https://me.example.com:8443/hooks/thumbs"},
		{view.MaskURL, "https://me.example.com/hooks/thumbs", "https://me.example.com/hooks/thumbs"}, // idempotent
		{view.MaskURL, "http://[::1]:8080", "http://[::1]:8080"},
		{view.MaskURL, "/relative/path", ""},
		{view.MaskURL, "::not a url", ""},
	} {
		is.Equal(tt.mask(tt.in), tt.want)
		is.Equal(tt.mask(tt.want), tt.want) // masking again changes nothing
	}
}

// TestValidEmail moved to mailaddr (mailaddr_test.go): view.ValidEmail is
// gone and mailaddr.Parse is the one address rule, at submit and at send.

func TestNewEventCarriesTheJobAndItsImages(t *testing.T) {
	is := is.New(t)
	expires := *at("2025-01-03T03:04:07Z")
	job := &jobs.Job{ID: "j1", Status: jobs.StatusSucceeded, CreatedAt: *at("2025-01-02T03:04:05Z"), FinishedAt: at("2025-01-02T03:04:07Z"),
		ExpiresAt: expires,
		Request:   jobs.Request{Source: jobs.SourceUpload, Width: 2, Fit: "contain", Format: "png", Quality: 80},
		Result: &jobs.Result{Outputs: []jobs.OutputResult{
			{Name: "default", Width: 2, Height: 1, Format: "png", ContentType: "image/png", Bytes: 3},
			{Name: "big", Width: 4, Height: 2, Format: "png", ContentType: "image/png", Bytes: 2},
		}}}
	def, big := inJSON(signed(links.Base, "j1", "default", expires)), inJSON(signed(links.Base, "j1", "big", expires))
	b, err := json.Marshal(view.NewEvent(job, links, map[string][]byte{"default": {1, 2, 3}, "big": {4, 5}}))
	is.NoErr(err)
	is.Equal(string(b), `{"type":"thumbnail.succeeded","timestamp":"2025-01-02T03:04:07Z","data":{"id":"j1","status":"succeeded",`+
		`"created_at":"2025-01-02T03:04:05Z","finished_at":"2025-01-02T03:04:07Z",`+
		`"request":{"source":"upload","width":2,"fit":"contain","format":"png","quality":80},`+
		`"result":{"width":2,"height":1,"format":"png","content_type":"image/png","bytes":3,"image_url":"`+def+`","outputs":[`+
		`{"name":"default","width":2,"height":1,"format":"png","content_type":"image/png","bytes":3,"url":"`+def+`","url_expires_at":"2025-01-03T03:04:07Z","base64":"AQID"},`+
		`{"name":"big","width":4,"height":2,"format":"png","content_type":"image/png","bytes":2,"url":"`+big+`","url_expires_at":"2025-01-03T03:04:07Z","base64":"BAU="}],`+
		`"srcset":{"png":"`+def+` 2w, `+big+` 4w"}},`+
		`"image":{"content_type":"image/png","url":"`+def+`","base64":"AQID"}}}`)

	// Links only: the same event without a byte of the images.
	b, err = json.Marshal(view.NewEvent(job, links, nil))
	is.NoErr(err)
	is.True(!strings.Contains(string(b), "base64"))
	is.True(strings.HasSuffix(string(b), `"image":{"content_type":"image/png","url":"`+def+`"}}}`))

	job.Status, job.Result, job.Error = jobs.StatusFailed, nil, &jobs.Error{Code: "timeout", Message: "too slow"}
	e := view.NewEvent(job, links, nil)
	is.Equal(e.Type, "thumbnail.failed")
	is.Equal(e.Data.Image, nil)
	is.Equal(e.Data.Error.Code, "timeout")
	is.Equal(e.Timestamp, *job.FinishedAt)
}
