package notifier_test

import (
	"bytes"
	"context"
	"image"
	_ "image/jpeg"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testsmtp"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/notifier"
)

const mary = "mary.smith@example.com"

func TestEmailOfASucceededJobShowsTheThumbnailInlineAndAttachesIt(t *testing.T) {
	is := is.New(t)
	sink := testsmtp.New(t)
	e := newEnv(t, notifier.Config{SMTPURL: sink.URL(), MailFrom: "Thumbnailed <thumbs@thumbnailed.test>", EmailSchedule: schedule("10ms")})
	img := testJPEG(t, 64, 48)
	job := e.createEnded(succeededJob("job-ok", mary, "", 64, 48, img), img)

	// The worker tells the notifier the job ended: the first attempt is queued at once.
	is.NoErr(e.n.JobEnded(context.Background(), job))
	is.Equal(e.queued(jobs.TypeDeliverEmail), int64(1))

	is.NoErr(e.n.DeliverEmail(emailAttempt(job.ID, 1)))

	got := sink.Received()
	is.Equal(len(got), 1)
	is.Equal(got[0].From, "thumbs@thumbnailed.test")
	is.Equal(got[0].To, []string{mary})
	msg, parts := parseMessage(t, got[0].Data)
	is.Equal(msg.Header.Get("To"), "<"+mary+">")
	is.Equal(msg.Header.Get("Subject"), "Your thumbnail is ready (64x48 JPEG)")
	is.Equal(msg.Header.Get("Message-Id"), "<thumbnail-job-ok@thumbnailed.test>")
	is.Equal(msg.Header.Get("Auto-Submitted"), "auto-generated")

	text, ok := findPart(parts, func(p part) bool { return p.contentType == "text/plain" })
	is.True(ok)
	mustContain(t, string(text.body), "64 x 48 pixels")
	mustContain(t, string(text.body), "GET /v1/thumbnails/job-ok/image")
	mustNotContain(t, string(text.body), "X-Amz-Signature") // the source URL is shown without its query

	html, ok := findPart(parts, func(p part) bool { return p.contentType == "text/html" })
	is.True(ok)
	const cid = "thumbnail-job-ok.jpg@thumbnailed"
	mustContain(t, string(html.body), `src="cid:`+cid+`"`)

	inline, ok := findPart(parts, func(p part) bool { return p.contentID == "<"+cid+">" })
	is.True(ok) // the HTML's cid: points at a part
	is.Equal(inline.contentType, "image/jpeg")
	is.Equal(inline.disposition, "inline")
	cfg, format, err := image.DecodeConfig(bytes.NewReader(inline.body))
	is.NoErr(err)
	is.Equal(format, "jpeg")
	is.Equal([2]int{cfg.Width, cfg.Height}, [2]int{64, 48}) // the inline image is the thumbnail
	is.True(bytes.Equal(inline.body, img))

	attached, ok := findPart(parts, func(p part) bool { return p.disposition == "attachment" })
	is.True(ok)
	is.Equal(attached.filename, "thumbnail-job-ok.jpg")
	is.True(bytes.Equal(attached.body, img))

	d := e.delivery(job.ID, jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryDelivered)
	is.Equal(d.Attempts, 1)
	is.True(d.LastAttemptAt != nil)
	is.Equal(d.NextAttemptAt, nil)
	is.Equal(d.LastError, "")
}

func TestEmailOfAFailedJobSaysWhyAndWhatToTry(t *testing.T) {
	is := is.New(t)
	sink := testsmtp.New(t)
	e := newEnv(t, notifier.Config{SMTPURL: sink.URL()})
	job := e.createEnded(failedJob("job-bad", mary, "", "too_many_pixels",
		"the image is 64250x64250 pixels; the limit is 50000000 pixels"), nil)

	is.NoErr(e.n.DeliverEmail(emailAttempt(job.ID, 1)))

	got := sink.Received()
	is.Equal(len(got), 1)
	msg, parts := parseMessage(t, got[0].Data)
	is.Equal(msg.Header.Get("Subject"), "Your thumbnail could not be made (too_many_pixels)")
	for _, kind := range []string{"text/plain", "text/html"} {
		p, ok := findPart(parts, func(p part) bool { return p.contentType == kind })
		is.True(ok)
		mustContain(t, string(p.body), "too_many_pixels")
		mustContain(t, string(p.body), "the image is 64250x64250 pixels; the limit is 50000000 pixels")
		mustContain(t, string(p.body), "Scale it down")
	}
	_, hasImage := findPart(parts, func(p part) bool { return strings.HasPrefix(p.contentType, "image/") })
	is.True(!hasImage)
	is.Equal(e.delivery(job.ID, jobs.ChannelEmail).Status, jobs.DeliveryDelivered)
}

func TestATemporarySMTPRefusalSchedulesTheNextAttempt(t *testing.T) {
	is := is.New(t)
	sink := testsmtp.New(t)
	sink.SetReply(testsmtp.TempFailure)
	e := newEnv(t, notifier.Config{SMTPURL: sink.URL(), EmailSchedule: schedule("1m,5m")})
	img := testJPEG(t, 8, 8)
	job := e.createEnded(succeededJob("job-451", mary, "", 8, 8, img), img)

	before := time.Now()
	is.NoErr(e.n.DeliverEmail(emailAttempt(job.ID, 1))) // a retry is not a failure of the handler

	d := e.delivery(job.ID, jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryPending)
	is.Equal(d.Attempts, 1)
	is.True(d.NextAttemptAt != nil)
	wait := d.NextAttemptAt.Sub(*d.LastAttemptAt)
	is.True(wait > 59*time.Second && wait < 61*time.Second) // the schedule's first gap
	mustContain(t, d.LastError, "451")
	mustNotContain(t, d.LastError, mary)

	next := e.scheduled()
	is.Equal(len(next), 1)
	is.Equal(next[0].Name, jobs.TypeDeliverEmail)
	is.Equal(next[0].ArgString(jobs.ArgJobID), job.ID)
	is.Equal(next[0].ArgString(jobs.ArgAttempt), "2")
	runIn := time.Unix(next[0].RunAt, 0).Sub(before)
	is.True(runIn >= 59*time.Second && runIn <= 62*time.Second)

	// The mailbox frees up: the second attempt delivers.
	sink.SetReply(nil)
	is.NoErr(e.n.DeliverEmail(emailAttempt(job.ID, 2)))
	is.Equal(len(sink.Received()), 1)
	d = e.delivery(job.ID, jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryDelivered)
	is.Equal(d.Attempts, 2)
}

func TestAPermanentSMTPRefusalFailsTheDeliveryAtOnce(t *testing.T) {
	is := is.New(t)
	sink := testsmtp.New(t)
	sink.SetReply(testsmtp.PermanentFailure)
	e := newEnv(t, notifier.Config{SMTPURL: sink.URL(), EmailSchedule: schedule("10ms,10ms")})
	job := e.createEnded(failedJob("job-550", mary, "", "timeout", "took too long"), nil)

	err := e.n.DeliverEmail(emailAttempt(job.ID, 1))
	is.True(err != nil) // the gocraft job goes to the dead set, where operators look
	mustContain(t, err.Error(), notifier.CodeRecipientRejected)
	mustNotContain(t, err.Error(), mary)

	d := e.delivery(job.ID, jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, notifier.CodeRecipientRejected)
	is.Equal(d.Attempts, 1)
	is.Equal(d.NextAttemptAt, nil)
	mustContain(t, d.LastError, "550")
	mustNotContain(t, d.LastError, mary) // the server echoed the address
	is.Equal(len(e.scheduled()), 0)
	is.Equal(len(sink.Received()), 0)
}

func TestEmailRetriesEndWhenTheScheduleRunsOut(t *testing.T) {
	is := is.New(t)
	sink := testsmtp.New(t)
	sink.SetReply(testsmtp.TempFailure)
	e := newEnv(t, notifier.Config{SMTPURL: sink.URL(), EmailSchedule: schedule("10ms")})
	job := e.createEnded(failedJob("job-busy", mary, "", "timeout", "took too long"), nil)

	is.NoErr(e.n.DeliverEmail(emailAttempt(job.ID, 1)))
	err := e.n.DeliverEmail(emailAttempt(job.ID, 2))
	is.True(err != nil)

	d := e.delivery(job.ID, jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, notifier.CodeRetriesExhausted)
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
	e := newEnv(t, notifier.Config{SMTPURL: "smtp://" + addr + "?tls=none", SMTPTimeout: 2 * time.Second, EmailSchedule: schedule("5m")})
	job := e.createEnded(failedJob("job-down", mary, "", "timeout", "took too long"), nil)

	is.NoErr(e.n.DeliverEmail(emailAttempt(job.ID, 1)))
	d := e.delivery(job.ID, jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryPending)
	mustContain(t, d.LastError, "could not hand the message to the mail server")
	is.Equal(len(e.scheduled()), 1)
}

func TestWithoutSMTPTheEmailIsWrittenToTheOutbox(t *testing.T) {
	is := is.New(t)
	dir := filepath.Join(t.TempDir(), "outbox") // does not exist yet
	e := newEnv(t, notifier.Config{OutboxDir: dir})
	info, err := os.Stat(dir)
	is.NoErr(err) // made by New
	is.Equal(info.Mode().Perm(), os.FileMode(0o750))

	img := testJPEG(t, 32, 20)
	job := e.createEnded(succeededJob("job-outbox", mary, "", 32, 20, img), img)
	is.NoErr(e.n.DeliverEmail(emailAttempt(job.ID, 1)))

	entries, err := os.ReadDir(dir)
	is.NoErr(err)
	is.Equal(len(entries), 1) // no temporary file left behind
	is.Equal(entries[0].Name(), "job-outbox-email.eml")
	raw, err := os.ReadFile(filepath.Join(dir, entries[0].Name()))
	is.NoErr(err)
	msg, parts := parseMessage(t, raw)
	is.Equal(msg.Header.Get("To"), "<"+mary+">")
	inline, ok := findPart(parts, func(p part) bool { return p.disposition == "inline" })
	is.True(ok)
	cfg, _, err := image.DecodeConfig(bytes.NewReader(inline.body))
	is.NoErr(err)
	is.Equal([2]int{cfg.Width, cfg.Height}, [2]int{32, 20})

	d := e.delivery(job.ID, jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryDelivered) // written counts as delivered
}

func TestNoMoreThanTheLimitOfEmailsGoToOneAddressInAnHour(t *testing.T) {
	is := is.New(t)
	sink := testsmtp.New(t)
	e := newEnv(t, notifier.Config{SMTPURL: sink.URL(), EmailPerRecipientPerHour: 2})
	addresses := []string{mary, "Mary.Smith@Example.com", mary} // one mailbox, however it is spelled
	var ids []string
	for i, addr := range addresses {
		job := e.createEnded(failedJob("job-limit-"+string(rune('a'+i)), addr, "", "timeout", "took too long"), nil)
		ids = append(ids, job.ID)
	}
	is.NoErr(e.n.DeliverEmail(emailAttempt(ids[0], 1)))
	is.NoErr(e.n.DeliverEmail(emailAttempt(ids[1], 1)))
	err := e.n.DeliverEmail(emailAttempt(ids[2], 1))
	is.True(err != nil)

	is.Equal(len(sink.Received()), 2)
	d := e.delivery(ids[2], jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, notifier.CodeRecipientRateLimited)
	mustContain(t, d.LastError, "2 emails this hour")
	is.Equal(e.get(ids[2]).Status, jobs.StatusFailed) // the job itself is untouched

	// The address never reaches Redis keys, nor the logs.
	conn := e.pool.Get()
	defer conn.Close()
	keys, err := conn.Do("KEYS", e.ns+":email-count:*")
	is.NoErr(err)
	is.Equal(len(keys.([]interface{})), 1)
	mustNotContain(t, strings.ToLower(string(keys.([]interface{})[0].([]byte))), "mary")
	mustNotContain(t, strings.ToLower(e.logs.String()), "mary.smith")
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
	sink := testsmtp.New(t)
	e := newEnv(t, notifier.Config{SMTPURL: sink.URL()})

	// An address that slipped past the API's check is refused, not mailed.
	bad := e.createEnded(failedJob("job-inject-addr", mary+"\r\nBcc: victim@example.org", "", "timeout", "took too long"), nil)
	err := e.n.DeliverEmail(emailAttempt(bad.ID, 1))
	is.True(err != nil)
	d := e.delivery(bad.ID, jobs.ChannelEmail)
	is.Equal(d.ErrorCode, notifier.CodeRecipientInvalid)
	is.Equal(len(sink.Received()), 0)

	// Job fields that end up in the subject, the file name and the
	// Message-ID carry CR/LF: they stay inside their header.
	job := e.createEnded(failedJob("job\r\nX-Injected: id", mary, "",
		"timeout\r\nBcc: victim@example.org\r\nX-Injected: code", "bad\r\n\r\nX-Injected: message"), nil)
	is.NoErr(e.n.DeliverEmail(emailAttempt(job.ID, 1)))
	img := testJPEG(t, 4, 4)
	job2 := e.createEnded(succeededJob("img\r\nX-Injected: file", mary, "", 4, 4, img), img)
	is.NoErr(e.n.DeliverEmail(emailAttempt(job2.ID, 1)))

	got := sink.Received()
	is.Equal(len(got), 2)
	for _, m := range got {
		is.Equal(m.To, []string{mary}) // no other recipient
		msg, parts := parseMessage(t, m.Data)
		is.Equal(msg.Header.Get("Bcc"), "")
		is.Equal(msg.Header.Get("X-Injected"), "")
		for _, p := range parts {
			is.True(!strings.Contains(p.filename, "\n"))
		}
	}
	msg, _ := parseMessage(t, got[0].Data)
	subject := msg.Header.Get("Subject")
	is.True(!strings.ContainsAny(subject, "\r\n"))
	msg2, parts2 := parseMessage(t, got[1].Data)
	is.Equal(msg2.Header.Get("Message-Id"), "<thumbnail-imgX-Injectedfile@localhost>")
	attached, ok := findPart(parts2, func(p part) bool { return p.disposition == "attachment" })
	is.True(ok)
	is.Equal(attached.filename, "thumbnail-imgX-Injectedfile.jpg")
}
