package testsmtp

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
)

// Part is one leaf of a parsed message, its transfer encoding undone.
type Part struct {
	ContentType string // the media type, e.g. "image/jpeg"
	Disposition string // "inline" or "attachment"; "" without a Content-Disposition
	Filename    string // the Content-Disposition's
	ContentID   string // e.g. "<thumbnail-job-1-default.jpg@thumbnailed>"
	Body        []byte
}

// Parse reads a message the way a mail client would: headers with net/mail,
// the body tree with mime/multipart, every leaf decoded. A message a client
// could not read fails the test.
func Parse(t testing.TB, raw []byte) (*mail.Message, []Part) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("not a mail message: %v\n%s", err, raw)
	}
	var parts []Part
	walk(t, msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"),
		msg.Header.Get("Content-Disposition"), msg.Header.Get("Content-ID"), msg.Body, &parts)
	return msg, parts
}

func walk(t testing.TB, contentType, encoding, disposition, contentID string, body io.Reader, parts *[]Part) {
	t.Helper()
	if contentType == "" {
		contentType = "text/plain"
	}
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		t.Fatalf("bad Content-Type %q: %v", contentType, err)
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		r := multipart.NewReader(body, params["boundary"])
		for {
			// Raw: NextPart would undo quoted-printable itself and drop the
			// header, and the leaves would be decoded two ways.
			p, err := r.NextRawPart()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("multipart: %v", err)
			}
			walk(t, p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"),
				p.Header.Get("Content-Disposition"), p.Header.Get("Content-ID"), p, parts)
		}
	}
	var decoded io.Reader = body
	switch strings.ToLower(encoding) {
	case "base64":
		decoded = base64.NewDecoder(base64.StdEncoding, body)
	case "quoted-printable":
		decoded = quotedprintable.NewReader(body)
	}
	b, err := io.ReadAll(decoded)
	if err != nil {
		t.Fatalf("decode %s part: %v", mediaType, err)
	}
	leaf := Part{ContentType: mediaType, ContentID: contentID, Body: b}
	if disposition != "" {
		d, dparams, err := mime.ParseMediaType(disposition)
		if err != nil {
			t.Fatalf("bad Content-Disposition %q: %v", disposition, err)
		}
		leaf.Disposition, leaf.Filename = d, dparams["filename"]
	}
	*parts = append(*parts, leaf)
}
