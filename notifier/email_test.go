package notifier_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/internal/testsmtp"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/notifier"
)

const mary = "mary.smith@example.com"

// Issue 14: the thumbnail used to travel twice (inline for the HTML and
// again as an attachment). Now the inline part is the one a reader saves.
func TestEmailOfASucceededJobShowsTheThumbnailInlineAsTheOneSavedPart(t *testing.T) {
	is := is.New(t)
	sink, e := newMailEnv(t, nil, notifier.Config{MailFrom: "thumbs@thumbnailed.test", EmailSchedule: schedule("10ms")})
	img := testJPEG(t, 64, 48)
	job := e.succeededJob("job-ok", mary, "", 64, 48, img)

	// The job's end queued the first attempt at once.
	is.Equal(e.queuedDeliveries(), []jobs.Work{{Kind: jobs.ChannelEmail, JobID: job.ID, Attempt: 1}})
	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 1))

	got := sink.Received()
	is.Equal(len(got), 1)
	is.Equal(got[0].From, "thumbs@thumbnailed.test")
	is.Equal(got[0].To, []string{mary})
	msg, parts := testsmtp.Parse(t, got[0].Data)
	is.Equal(msg.Header.Get("To"), "<"+mary+">")
	is.Equal(msg.Header.Get("Subject"), "Your thumbnail is ready (64x48 JPEG)")
	is.Equal(msg.Header.Get("Message-Id"), "<thumbnail-job-ok@thumbnailed.test>")
	is.Equal(msg.Header.Get("Auto-Submitted"), "auto-generated")

	text, ok := findPart(parts, func(p testsmtp.Part) bool { return p.ContentType == "text/plain" })
	is.True(ok)
	mustContain(t, string(text.Body), "64 x 48 pixels")
	links := signedLinks(string(text.Body))
	is.Equal(len(links), 1)
	verifyLink(t, e.links, job, jobs.DefaultOutput, links[0]) // a link that opens without an API key
	mustNotContain(t, string(text.Body), "X-Amz-Signature")   // the source URL is shown without its query

	html, ok := findPart(parts, func(p testsmtp.Part) bool { return p.ContentType == "text/html" })
	is.True(ok)
	const cid = "thumbnail-job-ok-default.jpg@thumbnailed"
	mustContain(t, string(html.Body), `src="cid:`+cid+`"`)
	mustContain(t, string(html.Body), `href="`+strings.ReplaceAll(links[0], "&", "&amp;")+`"`)

	images := imageParts(parts)
	is.Equal(len(images), 1) // the image travels once
	inline := images[0]
	is.Equal(inline.ContentID, "<"+cid+">") // the HTML's cid: points at it
	is.Equal(inline.ContentType, "image/jpeg")
	is.Equal(inline.Disposition, "inline")
	is.Equal(inline.Filename, "thumbnail-job-ok-default.jpg") // and a reader saves it under this name
	cfg, format, err := image.DecodeConfig(bytes.NewReader(inline.Body))
	is.NoErr(err)
	is.Equal(format, "jpeg")
	is.Equal([2]int{cfg.Width, cfg.Height}, [2]int{64, 48})
	is.True(bytes.Equal(inline.Body, img))

	d := e.delivery(job.ID, jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryDelivered)
	is.Equal(d.Attempts, 1)
	is.True(d.LastAttemptAt != nil)
	is.Equal(d.NextAttemptAt, nil)
	is.Equal(d.LastError, "")
	is.Equal(d.Log, []jobs.LogEntry{{Attempt: 1, At: *d.LastAttemptAt, Outcome: jobs.OutcomeDelivered}})
}

// Issue 14 item 5: with several outputs, the first is inline (the one
// saved part), the others are attached, and every one is listed with its
// signed link.
func TestEmailWithSeveralOutputsAttachesEachOnceAndListsEveryLink(t *testing.T) {
	is := is.New(t)
	sink, e := newMailEnv(t, nil, notifier.Config{})
	card, avatar, icon := testJPEG(t, 64, 48), testPNG(t, 16, 16), testJPEG(t, 8, 6)
	job := e.end(jobSpec{id: "job-set", email: mary, outputs: []output{
		{"card", "jpeg", 64, 48, card}, {"avatar", "png", 16, 16, avatar}, {"icon", "jpeg", 8, 6, icon}}})

	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 1))
	got := sink.Received()
	is.Equal(len(got), 1)
	msg, parts := testsmtp.Parse(t, got[0].Data)
	is.Equal(msg.Header.Get("Subject"), "Your thumbnail is ready (64x48 JPEG)") // the first output

	images := imageParts(parts)
	is.Equal(len(images), 3) // each output once
	want := []struct {
		name, filename, contentType, disposition string
		body                                     []byte
	}{
		{"card", "thumbnail-job-set-card.jpg", "image/jpeg", "inline", card},
		{"avatar", "thumbnail-job-set-avatar.png", "image/png", "attachment", avatar},
		{"icon", "thumbnail-job-set-icon.jpg", "image/jpeg", "attachment", icon},
	}
	for _, w := range want {
		p, ok := findPart(images, func(p testsmtp.Part) bool { return p.Filename == w.filename })
		is.True(ok)
		is.Equal(p.ContentType, w.contentType)
		is.Equal(p.Disposition, w.disposition)
		is.True(bytes.Equal(p.Body, w.body))
	}
	html, _ := findPart(parts, func(p testsmtp.Part) bool { return p.ContentType == "text/html" })
	inline, _ := findPart(images, func(p testsmtp.Part) bool { return p.Disposition == "inline" })
	is.Equal(inline.ContentID, "<thumbnail-job-set-card.jpg@thumbnailed>")
	mustContain(t, string(html.Body), `src="cid:thumbnail-job-set-card.jpg@thumbnailed"`)
	is.Equal(strings.Count(string(html.Body), "<img"), 1) // only the first is shown

	text, _ := findPart(parts, func(p testsmtp.Part) bool { return p.ContentType == "text/plain" })
	mustContain(t, string(text.Body), "Your images are ready")
	links := signedLinks(string(text.Body))
	is.Equal(len(links), 3)
	for i, w := range want {
		verifyLink(t, e.links, job, w.name, links[i])
		mustContain(t, string(html.Body), `href="`+strings.ReplaceAll(links[i], "&", "&amp;")+`"`)
	}
	mustContain(t, string(text.Body), "card: 64 x 48 pixels, jpeg ("+itoa(len(card))+" bytes), attached")
	mustContain(t, string(text.Body), "avatar: 16 x 16 pixels, png ("+itoa(len(avatar))+" bytes), attached")
}

// The outputs are attached while the message stays under 10 MB, counting
// base64 and its line breaks; an output that does not fit is still listed
// with its link.
func TestEmailStaysUnderTenMegabytes(t *testing.T) {
	is := is.New(t)
	outbox := t.TempDir()
	e := newEnv(t, notifier.Config{OutboxDir: outbox})
	first, second, third := random(t, 4_000_000), random(t, 3_310_000), random(t, 1000)
	job := e.end(jobSpec{id: "job-big", email: mary, outputs: []output{
		{"first", "jpeg", 4000, 3000, first}, {"second", "jpeg", 3000, 2000, second}, {"third", "png", 10, 10, third}}})

	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 1))
	raw, err := os.ReadFile(filepath.Join(outbox, "job-big-email.eml"))
	is.NoErr(err)
	is.True(len(raw) < 10_000_000) // what mail systems commonly take
	_, parts := testsmtp.Parse(t, raw)
	images := imageParts(parts)
	is.Equal(len(images), 2)
	is.True(bytes.Equal(images[0].Body, first))
	is.Equal(images[0].Disposition, "inline")
	is.True(bytes.Equal(images[1].Body, third)) // the small one still fits after the big one did not
	is.Equal(images[1].Disposition, "attachment")

	text, _ := findPart(parts, func(p testsmtp.Part) bool { return p.ContentType == "text/plain" })
	links := signedLinks(string(text.Body))
	is.Equal(len(links), 3)
	verifyLink(t, e.links, job, "second", links[1])                                           // the one left out is a link away
	mustContain(t, string(text.Body), "second: 3000 x 2000 pixels, jpeg (3310000 bytes)\r\n") // and not attached
}

func random(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEmailOfAFailedJobSaysWhyAndWhatToTry(t *testing.T) {
	is := is.New(t)
	sink, e := newMailEnv(t, nil, notifier.Config{})
	job := e.failedJob("job-bad", mary, "", "too_many_pixels",
		"the image is 64250x64250 pixels; the limit is 50000000 pixels")

	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 1))

	got := sink.Received()
	is.Equal(len(got), 1)
	msg, parts := testsmtp.Parse(t, got[0].Data)
	is.Equal(msg.Header.Get("Subject"), "Your thumbnail could not be made (too_many_pixels)")
	for _, kind := range []string{"text/plain", "text/html"} {
		p, ok := findPart(parts, func(p testsmtp.Part) bool { return p.ContentType == kind })
		is.True(ok)
		mustContain(t, string(p.Body), "too_many_pixels")
		mustContain(t, string(p.Body), "the image is 64250x64250 pixels; the limit is 50000000 pixels")
		mustContain(t, string(p.Body), "Scale it down")
		mustContain(t, string(p.Body), "GET https://thumbs.example.com/v1/thumbnails/job-bad") // absolute with a public URL
	}
	is.Equal(len(imageParts(parts)), 0)
	is.Equal(e.delivery(job.ID, jobs.ChannelEmail).Status, jobs.DeliveryDelivered)
}

// Issue 14: the advice used to name formats this build did not accept.
func TestTheFailureEmailAdvisesExactlyTheAcceptedFormats(t *testing.T) {
	is := is.New(t)
	outbox := t.TempDir()
	e := newEnv(t, notifier.Config{OutboxDir: outbox, AcceptedFormats: "JPEG and PNG"})
	job := e.failedJob("job-bmp", mary, "", "unsupported_format", "the image is a BMP file")

	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 1))
	raw, err := os.ReadFile(filepath.Join(outbox, "job-bmp-email.eml"))
	is.NoErr(err)
	_, parts := testsmtp.Parse(t, raw)
	for _, kind := range []string{"text/plain", "text/html"} {
		p, ok := findPart(parts, func(p testsmtp.Part) bool { return p.ContentType == kind })
		is.True(ok)
		mustContain(t, string(p.Body), "Send an image in a format this service reads: JPEG and PNG.")
		for _, other := range []string{"GIF", "WebP", "TIFF", "AVIF", "HEIC"} {
			mustNotContain(t, string(p.Body), other)
		}
	}
}

func TestATemporarySMTPRefusalSchedulesTheNextAttempt(t *testing.T) {
	is := is.New(t)
	sink, e := newMailEnv(t, testsmtp.TempFailure, notifier.Config{EmailSchedule: schedule("1m,5m")})
	img := testJPEG(t, 8, 8)
	job := e.succeededJob("job-451", mary, "", 8, 8, img)

	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 1)) // a retry is not a failure of the attempt

	d := e.delivery(job.ID, jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryPending)
	is.Equal(d.Attempts, 1)
	is.Equal(d.NextAttemptAt.Sub(*d.LastAttemptAt), time.Minute) // the schedule's first gap
	mustContain(t, d.LastError, "451")
	mustNotContain(t, d.LastError, mary)
	is.Equal(len(d.Log), 1)
	is.Equal(d.Log[0].Outcome, jobs.OutcomeRetry)
	is.Equal(d.Log[0].StatusCode, 451) // the SMTP reply code
	mustContain(t, d.Log[0].Response, "Mailbox busy")
	mustNotContain(t, d.Log[0].Response, mary)

	is.Equal(e.untilDue(), []jobs.Work{{Kind: jobs.ChannelEmail, JobID: job.ID, Attempt: 2}})
	is.Equal(e.clock.Now(), *d.NextAttemptAt)

	// The mailbox frees up: the second attempt delivers.
	sink.SetReply(nil)
	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 2))
	is.Equal(len(sink.Received()), 1)
	d = e.delivery(job.ID, jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryDelivered)
	is.Equal(d.Attempts, 2)
}

func TestAPermanentSMTPRefusalFailsTheDeliveryAtOnce(t *testing.T) {
	is := is.New(t)
	sink, e := newMailEnv(t, testsmtp.PermanentFailure, notifier.Config{EmailSchedule: schedule("10ms,10ms")})
	job := e.failedJob("job-550", mary, "", "timeout", "took too long")

	err := e.deliver(jobs.ChannelEmail, job.ID, 1)
	is.True(errors.Is(err, jobs.ErrDeliveryFailed)) // the worker puts it in the dead set, where operators look
	mustContain(t, err.Error(), codes.RecipientRejected)
	mustNotContain(t, err.Error(), mary)

	d := e.delivery(job.ID, jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, codes.RecipientRejected)
	is.Equal(d.Attempts, 1)
	is.Equal(d.NextAttemptAt, nil)
	mustContain(t, d.LastError, "550")
	mustNotContain(t, d.LastError, mary) // the server echoed the address
	is.Equal(d.Log[0].StatusCode, 550)
	is.Equal(d.Log[0].Outcome, jobs.OutcomeFailed)
	mustNotContain(t, d.Log[0].Response, mary)
	is.True(e.nextDue().IsZero())
	is.Equal(len(sink.Received()), 0)
}

func TestEmailRetriesEndWhenTheScheduleRunsOut(t *testing.T) {
	is := is.New(t)
	_, e := newMailEnv(t, testsmtp.TempFailure, notifier.Config{EmailSchedule: schedule("10ms")})
	job := e.failedJob("job-busy", mary, "", "timeout", "took too long")

	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 1))
	e.untilDue()
	err := e.deliver(jobs.ChannelEmail, job.ID, 2)
	is.True(errors.Is(err, jobs.ErrDeliveryFailed))

	d := e.delivery(job.ID, jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, codes.RetriesExhausted)
	is.Equal(d.Attempts, 2)
	mustContain(t, d.LastError, "gave up after 2 attempts")
	mustContain(t, d.LastError, "451") // and says what the last one met
}

func TestAnUnreachableMailServerIsRetried(t *testing.T) {
	is := is.New(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	is.NoErr(err)
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	server, err := notifier.ParseSMTPURL("smtp://" + addr + "?tls=none")
	is.NoErr(err)
	e := newEnv(t, notifier.Config{SMTP: &server, SMTPTimeout: 2 * time.Second, EmailSchedule: schedule("5m")})
	job := e.failedJob("job-down", mary, "", "timeout", "took too long")

	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 1))
	d := e.delivery(job.ID, jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryPending)
	mustContain(t, d.LastError, "could not hand the message to the mail server")
	is.Equal(e.untilDue(), []jobs.Work{{Kind: jobs.ChannelEmail, JobID: job.ID, Attempt: 2}})
}

func TestWithoutSMTPTheEmailIsWrittenToTheOutbox(t *testing.T) {
	is := is.New(t)
	dir := filepath.Join(t.TempDir(), "outbox") // does not exist yet
	e := newEnv(t, notifier.Config{OutboxDir: dir})
	info, err := os.Stat(dir)
	is.NoErr(err) // made by New
	is.Equal(info.Mode().Perm(), os.FileMode(0o750))

	img := testJPEG(t, 32, 20)
	job := e.succeededJob("job-outbox", mary, "", 32, 20, img)
	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 1))

	entries, err := os.ReadDir(dir)
	is.NoErr(err)
	is.Equal(len(entries), 1) // no temporary file left behind
	is.Equal(entries[0].Name(), "job-outbox-email.eml")
	raw, err := os.ReadFile(filepath.Join(dir, entries[0].Name()))
	is.NoErr(err)
	msg, parts := testsmtp.Parse(t, raw)
	is.Equal(msg.Header.Get("To"), "<"+mary+">")
	inline, ok := findPart(parts, func(p testsmtp.Part) bool { return p.Disposition == "inline" })
	is.True(ok)
	cfg, _, err := image.DecodeConfig(bytes.NewReader(inline.Body))
	is.NoErr(err)
	is.Equal([2]int{cfg.Width, cfg.Height}, [2]int{32, 20})

	d := e.delivery(job.ID, jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryDelivered) // written counts as delivered
}

func TestNewRefusesAnOutboxItCannotMake(t *testing.T) {
	is := is.New(t)
	file := filepath.Join(t.TempDir(), "a-file")
	is.NoErr(os.WriteFile(file, nil, 0o600))
	e := newEnv(t, notifier.Config{})
	_, err := notifier.New(testLogger(), notifier.Config{OutboxDir: filepath.Join(file, "outbox")}, e.store, e.blobs, e.client, nil, e.links, nil)
	is.True(err != nil)
	mustContain(t, err.Error(), "outbox")
}

// Issue 13 item 2: the limit counts the mailbox an address reaches
// (mailaddr's Key), so spellings of one mailbox share it, and an address
// with an encoded word never reaches the mail server.
func TestNoMoreThanTheLimitOfEmailsGoToOneMailboxInAnHour(t *testing.T) {
	is := is.New(t)
	sink, e := newMailEnv(t, nil, notifier.Config{EmailPerRecipientPerHour: 2})
	send := func(id, addr string) error {
		job := e.failedJob(id, addr, "", "timeout", "took too long")
		return e.deliver(jobs.ChannelEmail, job.ID, 1)
	}

	is.NoErr(send("job-limit-a", "victim@example.com"))
	err := send("job-limit-encoded", "=?utf-8?q?victim?=@example.com")
	is.True(errors.Is(err, jobs.ErrDeliveryFailed))
	is.Equal(e.delivery("job-limit-encoded", jobs.ChannelEmail).ErrorCode, codes.RecipientInvalid)
	is.NoErr(send("job-limit-b", "Victim@Example.com")) // the refused address did not count
	err = send("job-limit-c", "v.ictim+again@example.com")
	is.True(errors.Is(err, jobs.ErrDeliveryFailed))

	got := sink.Received()
	is.Equal(len(got), 2)
	is.Equal(got[0].To, []string{"victim@example.com"})
	is.Equal(got[1].To, []string{"Victim@example.com"}) // the exact address, its domain in lower case
	d := e.delivery("job-limit-c", jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, codes.RecipientRateLimited)
	mustContain(t, d.LastError, "2 emails this hour")
	is.Equal(e.get("job-limit-c").Status, jobs.StatusFailed) // the job itself is untouched

	// The address never reaches Redis keys, nor the logs.
	conn := e.pool.Get()
	defer conn.Close()
	keys, err := redis.Strings(conn.Do("KEYS", e.ns+":email-count:*"))
	is.NoErr(err)
	is.Equal(len(keys), 1) // one mailbox, one count
	mustNotContain(t, strings.ToLower(keys[0]), "victim")
	mustNotContain(t, strings.ToLower(e.logs.String()), "victim@")
	mustNotContain(t, strings.ToLower(e.logs.String()), "ictim+again")
}

func TestTheEmailCountIsPerJobAndPerHour(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, notifier.Config{})
	ctx := context.Background()
	hour := time.Date(2025, 1, 2, 10, 0, 0, 0, time.UTC)

	allowed, n, err := e.store.AllowEmail(ctx, mary, "a", 2, hour.Add(time.Minute))
	is.NoErr(err)
	is.True(allowed)
	is.Equal(n, 1)
	allowed, n, err = e.store.AllowEmail(ctx, mary, "a", 2, hour.Add(2*time.Minute)) // a retry of the same job
	is.NoErr(err)
	is.True(allowed)
	is.Equal(n, 1) // not counted twice
	allowed, n, _ = e.store.AllowEmail(ctx, strings.ToUpper(mary), "b", 2, hour.Add(3*time.Minute))
	is.True(allowed)
	is.Equal(n, 2)
	allowed, n, _ = e.store.AllowEmail(ctx, mary, "c", 2, hour.Add(59*time.Minute))
	is.True(!allowed)
	is.Equal(n, 2) // a refused email is not counted

	// The next hour starts a new count.
	allowed, n, _ = e.store.AllowEmail(ctx, mary, "c", 2, hour.Add(61*time.Minute))
	is.True(allowed)
	is.Equal(n, 1)
	allowed, _, _ = e.store.AllowEmail(ctx, "someone.else@example.com", "d", 2, hour.Add(59*time.Minute))
	is.True(allowed)

	// Each hour's count expires on its own.
	conn := e.pool.Get()
	defer conn.Close()
	keys, err := redis.Strings(conn.Do("KEYS", e.ns+":email-count:*"))
	is.NoErr(err)
	is.Equal(len(keys), 3) // mary's two hours, and someone else's
	for _, k := range keys {
		ttl, err := redis.Int(conn.Do("TTL", k))
		is.NoErr(err)
		is.True(ttl > 3600 && ttl <= 7200)
	}
}

func TestNoFieldCanInjectAHeader(t *testing.T) {
	is := is.New(t)
	sink, e := newMailEnv(t, nil, notifier.Config{})

	// An address that slipped past the API's check is refused, not mailed.
	bad := e.failedJob("job-inject-addr", mary+"\r\nBcc: victim@example.org", "", "timeout", "took too long")
	err := e.deliver(jobs.ChannelEmail, bad.ID, 1)
	is.True(errors.Is(err, jobs.ErrDeliveryFailed))
	d := e.delivery(bad.ID, jobs.ChannelEmail)
	is.Equal(d.ErrorCode, codes.RecipientInvalid)
	mustNotContain(t, d.LastError, "mary.smith")
	is.Equal(len(sink.Received()), 0)

	// Job fields that end up in the subject, the file name and the
	// Message-ID carry CR/LF or quotes: they stay inside their header.
	job := e.failedJob("job\r\nX-Injected: id", mary, "",
		"timeout\r\nBcc: victim@example.org\r\nX-Injected: code", "bad\r\n\r\nX-Injected: message")
	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 1))
	img := testJPEG(t, 4, 4)
	// (The blob store refuses ids with control characters, so the image's
	// job id carries quotes and a parameter instead.)
	job2 := e.end(jobSpec{id: `img"; filename="evil.exe`, email: mary,
		outputs: []output{{`x"; name="evil`, "jpeg", 4, 4, img}}})
	is.NoErr(e.deliver(jobs.ChannelEmail, job2.ID, 1))

	got := sink.Received()
	is.Equal(len(got), 2)
	for _, m := range got {
		is.Equal(m.To, []string{mary}) // no other recipient
		msg, parts := testsmtp.Parse(t, m.Data)
		is.Equal(msg.Header.Get("Bcc"), "")
		is.Equal(msg.Header.Get("X-Injected"), "")
		for _, p := range parts {
			is.True(!strings.ContainsAny(p.Filename, "\r\n\""))
		}
	}
	msg, _ := testsmtp.Parse(t, got[0].Data)
	subject := msg.Header.Get("Subject")
	is.True(!strings.ContainsAny(subject, "\r\n"))
	msg2, parts2 := testsmtp.Parse(t, got[1].Data)
	is.Equal(msg2.Header.Get("Message-Id"), "<thumbnail-imgfilenameevilexe@localhost>")
	images := imageParts(parts2)
	is.Equal(len(images), 1)
	is.Equal(images[0].Filename, "thumbnail-imgfilenameevilexe-xnameevil.jpg")
}

// findPart is the first of parts that match accepts.
func findPart(parts []testsmtp.Part, match func(testsmtp.Part) bool) (testsmtp.Part, bool) {
	for _, p := range parts {
		if match(p) {
			return p, true
		}
	}
	return testsmtp.Part{}, false
}

// imageParts are the parts that carry an image, in the message's order.
func imageParts(parts []testsmtp.Part) []testsmtp.Part {
	var out []testsmtp.Part
	for _, p := range parts {
		if strings.HasPrefix(p.ContentType, "image/") {
			out = append(out, p)
		}
	}
	return out
}

var signedLink = regexp.MustCompile(`https://thumbs\.example\.com/v1/thumbnails/\S+/outputs/\S+\?expires=\d+&signature=[A-Za-z0-9_-]+`)

// signedLinks are the signed links in a text, in order.
func signedLinks(text string) []string { return signedLink.FindAllString(text, -1) }

// Attempts of one series share a Message-ID (a mail system may drop the
// duplicate an interrupted attempt left); a redelivery is a new message with
// an id of its own, so that no mail system drops it as a duplicate.
func TestARedeliveredEmailIsANewMessage(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	e := newEnv(t, notifier.Config{OutboxDir: dir})
	job := e.failedJob("job-again", mary, "", "timeout", "took too long")
	messageID := func() string {
		raw, err := os.ReadFile(filepath.Join(dir, "job-again-email.eml"))
		is.NoErr(err)
		msg, _ := testsmtp.Parse(t, raw)
		return msg.Header.Get("Message-Id")
	}
	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 1))
	first := messageID()
	is.True(strings.HasPrefix(first, "<thumbnail-job-again@"))

	_, err := e.store.Redeliver(context.Background(), job.ID, jobs.ChannelEmail)
	is.NoErr(err)
	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 2))
	again := messageID()
	is.True(again != first)
	is.True(strings.HasPrefix(again, "<thumbnail-job-again-2@"))
}
