// Package templates holds the emails Thumbnailed sends, embedded in the
// binary: for each kind a text template ("{kind}.txt.tmpl", which also
// defines the "subject") and an HTML template ("{kind}.html.tmpl").
// Text is rendered with text/template, HTML with html/template, so whatever
// a job carries (an error message, a URL) is escaped in the HTML.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"strings"
	texttemplate "text/template"
	"unicode"
)

//go:embed *.tmpl
var files embed.FS

// Kind is which email to write.
type Kind string

const (
	// Succeeded: the images are ready; the first is shown inline.
	Succeeded Kind = "succeeded"
	// Failed: the job failed; the email says why and what to try.
	Failed Kind = "failed"
)

// Data is what the templates show. Fields a kind does not use stay empty.
type Data struct {
	JobID  string
	JobURL string // the job's status in the API: absolute when the service has a public URL
	Source string // where the original came from, for people: a masked URL or "an uploaded image"

	// Succeeded: every output, the first shown inline.
	Outputs  []Output
	ImageCID string // Content-ID of the inline first output, without "cid:" or angle brackets

	// Failed.
	ErrorCode    string
	ErrorMessage string
	// Accepted names the image formats this build decodes ("JPEG, PNG, GIF
	// and WebP"), for the advice on unsupported_format.
	Accepted string
}

// Output is one image of a succeeded job.
type Output struct {
	Name          string
	Width, Height int
	Format        string // "jpeg"
	ContentType   string
	Bytes         int
	URL           string // its signed link
	Attached      bool   // it travels in the email (the first one inline)
}

// First is the first output, the one shown.
func (d Data) First() Output {
	if len(d.Outputs) == 0 {
		return Output{}
	}
	return d.Outputs[0]
}

// Advice is what to try after the job failed.
func (d Data) Advice() string { return Advice(d.ErrorCode, d.Accepted) }

// Email is a rendered message.
type Email struct {
	Subject string
	Text    string
	HTML    string
}

type pair struct {
	text *texttemplate.Template
	html *htmltemplate.Template
}

var kinds = map[Kind]pair{}

func init() {
	for _, k := range []Kind{Succeeded, Failed} {
		kinds[k] = pair{
			text: texttemplate.Must(texttemplate.New(string(k)+".txt.tmpl").Funcs(texttemplate.FuncMap{"upper": strings.ToUpper}).
				ParseFS(files, string(k)+".txt.tmpl")),
			html: htmltemplate.Must(htmltemplate.New(string(k)+".html.tmpl").Funcs(htmltemplate.FuncMap{"cid": cid}).
				ParseFS(files, string(k)+".html.tmpl")),
		}
	}
}

// cid makes the src of the inline image. html/template only lets http,
// https and mailto URLs through, so the cid: URL is marked safe here, after
// keeping only characters a Content-ID may hold.
func cid(id string) htmltemplate.URL {
	clean := strings.Map(func(r rune) rune {
		if r < 0x80 && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune(".-_@", r)) {
			return r
		}
		return -1
	}, id)
	return htmltemplate.URL("cid:" + clean)
}

// Render writes the email of kind k.
func Render(k Kind, d Data) (Email, error) {
	p, ok := kinds[k]
	if !ok {
		return Email{}, fmt.Errorf("templates: no email of kind %q", k)
	}
	var subject, text, html bytes.Buffer
	if err := p.text.ExecuteTemplate(&subject, "subject", d); err != nil {
		return Email{}, fmt.Errorf("templates: %s subject: %w", k, err)
	}
	if err := p.text.Execute(&text, d); err != nil {
		return Email{}, fmt.Errorf("templates: %s text: %w", k, err)
	}
	if err := p.html.Execute(&html, d); err != nil {
		return Email{}, fmt.Errorf("templates: %s html: %w", k, err)
	}
	return Email{Subject: oneLine(subject.String()), Text: strings.TrimLeft(text.String(), "\n"), HTML: html.String()}, nil
}

// oneLine folds a subject onto one line: whatever the data held, no CR or
// LF reaches the header.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
}

// Advice tells a person what to try after a job failed with code; accepted
// names the formats this build decodes ("" when not known: the advice then
// names none rather than a list that may be wrong).
func Advice(code, accepted string) string {
	switch code {
	case "source_not_found":
		return "Check that the image URL is right and still public, then submit the job again."
	case "source_unreachable":
		return "The server holding the image did not answer properly. Check that it is up and reachable from the internet, then try again later."
	case "source_forbidden":
		return "The image URL points to an address this service does not fetch from (a private or local network). Use a public http or https URL, or upload the image instead."
	case "source_too_large":
		return "The image file is larger than this service accepts. Send a smaller or more compressed file."
	case "unsupported_format":
		if accepted == "" {
			return "Send the image in another, more common format."
		}
		return "Send an image in a format this service reads: " + accepted + "."
	case "too_many_pixels":
		return "The image has more pixels than this service decodes. Scale it down before sending it."
	case "corrupt_image":
		return "The image file appears to be damaged or cut short. Open it in an image viewer to check it, then send a good copy."
	case "timeout":
		return "Making the thumbnail took too long. Try again, or send a smaller image."
	case "worker_crashed":
		return "The image could not be processed safely. Try a smaller or simpler version of it."
	default:
		return "Try submitting the job again. If it keeps failing, contact the operator of this service and quote the job id."
	}
}
