package templates_test

import (
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/templates"
)

func succeeded() templates.Data {
	return templates.Data{
		JobID: "j1", JobPath: "/v1/thumbnails/j1", Source: "https://example.com/cat.jpg",
		Width: 256, Height: 171, Format: "jpeg", ContentType: "image/jpeg", Bytes: 10342,
		ImagePath: "/v1/thumbnails/j1/image", ImageCID: "thumbnail-j1@thumbnailed",
	}
}

func failed() templates.Data {
	return templates.Data{
		JobID: "j2", JobPath: "/v1/thumbnails/j2", Source: "an uploaded image",
		ErrorCode: "too_many_pixels", ErrorMessage: "the image is 64250x64250 pixels; the limit is 50000000 pixels",
	}
}

func TestSucceededEmailShowsTheThumbnailAndWhereToGetIt(t *testing.T) {
	is := is.New(t)
	e, err := templates.Render(templates.Succeeded, succeeded())
	is.NoErr(err)
	is.Equal(e.Subject, "Your thumbnail is ready (256x171 JPEG)")
	for _, want := range []string{"256 x 171 pixels", "jpeg (image/jpeg, 10342 bytes)", "GET /v1/thumbnails/j1/image", "j1", "attached"} {
		is.True(strings.Contains(e.Text, want)) // the text names size, format and link
	}
	is.True(strings.Contains(e.HTML, `<img src="cid:thumbnail-j1@thumbnailed" width="256" height="171"`)) // inline image by cid
	is.True(strings.Contains(e.HTML, "GET /v1/thumbnails/j1/image"))
	is.True(strings.Contains(e.HTML, "also attached"))
}

func TestSucceededEmailWithoutTheImageStillSaysWhereItIs(t *testing.T) {
	is := is.New(t)
	d := succeeded()
	d.ImageCID = "" // the thumbnail expired before the email went out
	e, err := templates.Render(templates.Succeeded, d)
	is.NoErr(err)
	is.True(!strings.Contains(e.HTML, "<img"))
	is.True(!strings.Contains(e.Text, "attached"))
	is.True(strings.Contains(e.Text, "GET /v1/thumbnails/j1/image"))
}

func TestFailedEmailSaysWhyAndWhatToTry(t *testing.T) {
	is := is.New(t)
	e, err := templates.Render(templates.Failed, failed())
	is.NoErr(err)
	is.Equal(e.Subject, "Your thumbnail could not be made (too_many_pixels)")
	for _, body := range []string{e.Text, e.HTML} {
		is.True(strings.Contains(body, "too_many_pixels"))
		is.True(strings.Contains(body, "the image is 64250x64250 pixels; the limit is 50000000 pixels"))
		is.True(strings.Contains(body, "Scale it down")) // the advice for this code
		is.True(strings.Contains(body, "/v1/thumbnails/j2"))
	}
}

func TestEveryDocumentedCodeHasItsOwnAdvice(t *testing.T) {
	is := is.New(t)
	fallback := templates.Advice("something_new")
	seen := map[string]bool{}
	for _, code := range []string{"source_not_found", "source_unreachable", "source_forbidden", "source_too_large",
		"unsupported_format", "too_many_pixels", "corrupt_image", "timeout", "worker_crashed"} {
		a := templates.Advice(code)
		is.True(a != fallback)
		is.True(!seen[a])
		seen[a] = true
	}
}

func TestHTMLEscapesWhatAJobCarries(t *testing.T) {
	is := is.New(t)
	d := failed()
	d.ErrorMessage = `<script>alert("x")</script> & <a href="https://evil.example">click</a>`
	d.Source = `https://example.com/"><img src=x onerror=alert(1)>`
	e, err := templates.Render(templates.Failed, d)
	is.NoErr(err)
	is.True(!strings.Contains(e.HTML, "<script>"))
	is.True(!strings.Contains(e.HTML, `<a href="https://evil.example">`))
	is.True(!strings.Contains(e.HTML, "<img src=x"))
	is.True(strings.Contains(e.HTML, "&lt;script&gt;"))
}

func TestTheImageSourceCannotBeTurnedIntoAnotherURL(t *testing.T) {
	is := is.New(t)
	d := succeeded()
	d.ImageCID = `x" onerror="alert(1)` + "\r\n" + `javascript:alert(1)`
	e, err := templates.Render(templates.Succeeded, d)
	is.NoErr(err)
	is.True(strings.Contains(e.HTML, `src="cid:xonerroralert1javascriptalert1"`))
}

func TestSubjectStaysOnOneLine(t *testing.T) {
	is := is.New(t)
	d := failed()
	d.ErrorCode = "timeout\r\nBcc: victim@example.org\r\n"
	e, err := templates.Render(templates.Failed, d)
	is.NoErr(err)
	is.True(!strings.ContainsAny(e.Subject, "\r\n"))
	is.Equal(e.Subject, "Your thumbnail could not be made (timeout Bcc: victim@example.org )")
}

func TestRenderRefusesAnUnknownKind(t *testing.T) {
	is := is.New(t)
	_, err := templates.Render("queued", templates.Data{})
	is.True(err != nil)
}
