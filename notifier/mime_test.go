package notifier_test

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

// part is one leaf of a parsed MIME message.
type part struct {
	contentType string
	params      map[string]string
	disposition string
	filename    string
	contentID   string
	body        []byte
}

// parseMessage reads a message the way a mail client would: headers with
// net/mail, the body tree with mime/multipart, every leaf decoded.
func parseMessage(t *testing.T, raw []byte) (*mail.Message, []part) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("not a mail message: %v\n%s", err, raw)
	}
	var parts []part
	walk(t, msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"),
		msg.Header.Get("Content-Disposition"), msg.Header.Get("Content-ID"), msg.Body, &parts)
	return msg, parts
}

func walk(t *testing.T, contentType, encoding, disposition, contentID string, body io.Reader, parts *[]part) {
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
	leaf := part{contentType: mediaType, params: params, contentID: contentID, body: b}
	if disposition != "" {
		d, dparams, err := mime.ParseMediaType(disposition)
		if err != nil {
			t.Fatalf("bad Content-Disposition %q: %v", disposition, err)
		}
		leaf.disposition, leaf.filename = d, dparams["filename"]
	}
	*parts = append(*parts, leaf)
}

func findPart(parts []part, match func(part) bool) (part, bool) {
	for _, p := range parts {
		if match(p) {
			return p, true
		}
	}
	return part{}, false
}
