package templates_test

import (
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/templates"
)

const (
	defaultLink = "https://thumbs.example.com/v1/thumbnails/j1/outputs/default?expires=1735873447&signature=abc-_XYZ"
	largeLink   = "https://thumbs.example.com/v1/thumbnails/j1/outputs/large?expires=1735873447&signature=def-_UVW"
)

func succeeded() templates.Data {
	return templates.Data{
		JobID: "j1", JobURL: "https://thumbs.example.com/v1/thumbnails/j1", Source: "https://example.com/cat.jpg",
		Outputs: []templates.Output{{Name: "default", Width: 256, Height: 171, Format: "jpeg", ContentType: "image/jpeg",
			Bytes: 10342, URL: defaultLink, Attached: true}},
		ImageCID: "thumbnail-j1@thumbnailed",
	}
}

func failed() templates.Data {
	return templates.Data{
		JobID: "j2", JobURL: "https://thumbs.example.com/v1/thumbnails/j2", Source: "an uploaded image",
		ErrorCode: "too_many_pixels", ErrorMessage: "the image is 64250x64250 pixels; the limit is 50000000 pixels",
		Accepted: "JPEG, PNG, GIF and WebP",
	}
}

func TestSucceededEmailShowsTheThumbnailAndWhereToGetIt(t *testing.T) {
	is := is.New(t)
	e, err := templates.Render(templates.Succeeded, succeeded())
	is.NoErr(err)
	is.Equal(e.Subject, "Your thumbnail is ready (256x171 JPEG)")
	for _, want := range []string{"Your thumbnail is ready.", "default: 256 x 171 pixels, jpeg (10342 bytes), attached\n    " + defaultLink + "\n",
		"Job:     j1", "Source:  https://example.com/cat.jpg", "without an API key"} {
		is.True(strings.Contains(e.Text, want)) // the text names size, format, the signed link and the job
	}
	is.True(strings.Contains(e.HTML, `<img src="cid:thumbnail-j1@thumbnailed" width="256" height="171"`)) // inline image by cid
	is.True(strings.Contains(e.HTML, `<a href="`+strings.ReplaceAll(defaultLink, "&", "&amp;")+`">256 &times; 171 jpeg</a> (10342 bytes, attached)`))
	is.True(strings.Contains(e.HTML, "<code>j1</code>"))
}

func TestSucceededEmailWithoutTheImageStillSaysWhereItIs(t *testing.T) {
	is := is.New(t)
	d := succeeded()
	d.ImageCID, d.Outputs[0].Attached = "", false // the image expired before the email went out
	e, err := templates.Render(templates.Succeeded, d)
	is.NoErr(err)
	is.True(!strings.Contains(e.HTML, "<img"))
	is.True(!strings.Contains(e.Text, "attached"))
	is.True(!strings.Contains(e.HTML, "attached"))
	is.True(strings.Contains(e.Text, defaultLink))
	is.True(strings.Contains(e.HTML, `href="`+strings.ReplaceAll(defaultLink, "&", "&amp;")+`"`))
}

func TestSucceededEmailListsEveryOutputAndShowsTheFirst(t *testing.T) {
	is := is.New(t)
	d := succeeded()
	d.Outputs = append(d.Outputs, templates.Output{Name: "large", Width: 1024, Height: 683, Format: "webp",
		ContentType: "image/webp", Bytes: 90000, URL: largeLink}) // too big to attach
	e, err := templates.Render(templates.Succeeded, d)
	is.NoErr(err)
	is.Equal(e.Subject, "Your thumbnail is ready (256x171 JPEG)") // the first output
	is.True(strings.Contains(e.Text, "Your images are ready."))
	is.True(strings.Contains(e.Text, "default: 256 x 171 pixels, jpeg (10342 bytes), attached\n    "+defaultLink+"\n"))
	is.True(strings.Contains(e.Text, "large: 1024 x 683 pixels, webp (90000 bytes)\n    "+largeLink+"\n"))
	is.True(strings.Contains(e.HTML, "Your images are ready"))
	is.Equal(strings.Count(e.HTML, "<img"), 1) // only the first is shown
	is.True(strings.Contains(e.HTML, `<img src="cid:thumbnail-j1@thumbnailed" width="256" height="171"`))
	is.True(strings.Contains(e.HTML, `<a href="`+strings.ReplaceAll(largeLink, "&", "&amp;")+`">1024 &times; 683 webp</a> (90000 bytes)</td>`))
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
		is.True(strings.Contains(body, "GET https://thumbs.example.com/v1/thumbnails/j2"))
		is.True(strings.Contains(body, "an uploaded image"))
	}
}

// Issue 14: the advice for unsupported_format names what this build
// accepts, exactly as given, and nothing else.
func TestTheAdviceNamesTheAcceptedFormats(t *testing.T) {
	is := is.New(t)
	d := failed()
	d.ErrorCode, d.ErrorMessage, d.Accepted = "unsupported_format", "the image is a BMP file", "JPEG and PNG"
	e, err := templates.Render(templates.Failed, d)
	is.NoErr(err)
	for _, body := range []string{e.Text, e.HTML} {
		is.True(strings.Contains(body, "Send an image in a format this service reads: JPEG and PNG."))
		for _, other := range []string{"GIF", "WebP", "TIFF", "AVIF", "HEIC"} {
			is.True(!strings.Contains(body, other))
		}
	}
	is.Equal(templates.Advice("unsupported_format", "JPEG, PNG, GIF and WebP"), "Send an image in a format this service reads: JPEG, PNG, GIF and WebP.")
	// Without the list the sentence still makes sense, and names no format.
	is.Equal(templates.Advice("unsupported_format", ""), "Send the image in another, more common format.")
}

// Every job error code a client can see has advice of its own; a code
// this package does not know (and internal_error, our own fault) gets the
// general advice, which asks for the job id.
func TestEveryJobCodeHasItsOwnAdvice(t *testing.T) {
	is := is.New(t)
	fallback := templates.Advice("something_new", "")
	is.True(strings.Contains(fallback, "quote the job id"))
	seen := map[string]bool{}
	job := codes.Names(codes.Job)
	is.True(len(job) >= 9)
	for _, code := range job {
		a := templates.Advice(code, "JPEG")
		if code == codes.Internal {
			is.Equal(a, fallback)
			continue
		}
		is.True(a != fallback) // code has advice of its own
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

func TestAnOutputCannotInjectMarkupOrAScriptLink(t *testing.T) {
	is := is.New(t)
	d := succeeded()
	d.Outputs[0].Name = `<b onmouseover=alert(1)>x</b>`
	d.Outputs[0].Format = `"><script>`
	d.Outputs[0].URL = "javascript:alert(1)"
	e, err := templates.Render(templates.Succeeded, d)
	is.NoErr(err)
	is.True(!strings.Contains(e.HTML, "<b onmouseover"))
	is.True(!strings.Contains(e.HTML, "<script>"))
	is.True(!strings.Contains(e.HTML, `href="javascript:`))
	is.True(strings.Contains(e.HTML, `href="#ZgotmplZ"`)) // html/template's mark for an unsafe URL
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

	s := succeeded()
	s.Outputs[0].Format = "jpeg\r\nBcc: victim@example.org"
	e, err = templates.Render(templates.Succeeded, s)
	is.NoErr(err)
	is.Equal(e.Subject, "Your thumbnail is ready (256x171 JPEG BCC: VICTIM@EXAMPLE.ORG)")
}

func TestRenderRefusesAnUnknownKind(t *testing.T) {
	is := is.New(t)
	_, err := templates.Render("queued", templates.Data{})
	is.True(err != nil)
}
