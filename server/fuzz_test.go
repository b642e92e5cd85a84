package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/thumbnail"
)

// Run with:
//
//	go test -run '^$' -fuzz '^FuzzDecodeRequestJSON$' -fuzztime 60s ./server/
//	go test -run '^$' -fuzz '^FuzzDecodeRequestMultipart$' -fuzztime 60s ./server/
//
// A crasher lands in testdata/fuzz/<target>/ and runs as a plain test from then on.

// fuzzLimits are the production defaults, with the private-network rule on.
var fuzzLimits = limits{maxDimension: 4096, maxOutputPixels: 40_000_000, engine: thumbnail.Default}

// fuzzMaxUpload is small, so the fuzzer reaches the 413 path with short inputs.
const fuzzMaxUpload = 4 << 10

// checkDecoded is what every body must come to: a *Problem a client can act
// on, or a request that validation can look at without panicking.
func checkDecoded(t *testing.T, req *createRequest, err error) {
	t.Helper()
	if err != nil {
		checkProblem(t, err, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity)
		if req != nil {
			t.Fatalf("a request came back with the error %v", err)
		}
		return
	}
	if req == nil {
		t.Fatal("no request and no error")
	}
	bad := req.Valid(fuzzLimits)
	if len(bad) > 0 {
		checkProblem(t, invalid(bad), http.StatusUnprocessableEntity)
		return
	}
	// A valid request becomes a job request with every default filled in.
	jr := req.jobRequest()
	if jr.Width == 0 && jr.Height == 0 || jr.Fit == "" || jr.Format == "" || jr.Quality < 1 || jr.Quality > 100 {
		t.Fatalf("a valid request made the job request %+v", jr)
	}
	if (jr.URL == "") == (req.upload == nil) {
		t.Fatalf("a valid request has url %q and an upload %+v", jr.URL, req.upload)
	}
	_ = fingerprint(jr, req.upload)
}

// memorySink is what the fuzz targets give decodeRequest for the image: it
// reads the upload into memory up to the limit the decoder sets, and runs
// checkUpload on its first bytes as the real sink does before storing.
func memorySink(r io.Reader) (*upload, error) {
	b, err := io.ReadAll(r)
	if errors.Is(err, errTooLarge) {
		return nil, err
	}
	if err != nil {
		return nil, problem(codes.MalformedBody, "the upload could not be read: "+err.Error())
	}
	h, p := checkUpload(b[:min(len(b), headerWindow)], 50_000_000, thumbnail.Default)
	if p != nil {
		return nil, p
	}
	sum := sha256.Sum256(b)
	return &upload{bytes: int64(len(b)), sha256: hex.EncodeToString(sum[:]), header: h}, nil
}

func checkProblem(t *testing.T, err error, statuses ...int) {
	t.Helper()
	var p *Problem
	if !errors.As(err, &p) {
		t.Fatalf("error %T is not a *Problem: %v", err, err)
	}
	ok := false
	for _, s := range statuses {
		ok = ok || p.Status == s
	}
	if !ok {
		t.Fatalf("status %d, want one of %v: %v", p.Status, statuses, p)
	}
	if p.Code == "" || p.Detail == "" || p.Title == "" || !strings.HasPrefix(p.Type, problemTypeBase) {
		t.Fatalf("problem without a code, detail, title or type: %+v", p)
	}
	if p.Status == http.StatusUnprocessableEntity && p.Code == "validation_failed" {
		if len(p.Errors) == 0 {
			t.Fatalf("a validation problem names no field: %+v", p)
		}
		for _, fe := range p.Errors {
			if fe.Message == "" {
				t.Fatalf("field %q has no message", fe.Field)
			}
		}
	}
}

func FuzzDecodeRequestJSON(f *testing.F) {
	for _, seed := range []string{
		`{"url": "https://example.com/cat.jpg", "width": 256}`,
		`{"url": "https://example.com/cat.jpg", "width": 256, "height": 256, "fit": "cover", "enlarge": true, "format": "webp", "quality": 80, "email": "me@example.com", "callback_url": "https://me.example.com/hooks/thumbs"}`,
		`{"url": "https://example.com/cat.jpg", "height": 1}`,
		`{"url": "http://127.1/", "width": 0, "height": 99999, "fit": "squash", "quality": 101, "email": "not-an-address", "callback_url": "http://169.254.169.254/latest"}`,
		`{"url": "https://example.com/a.jpg", "width": "wide"}`,
		`{"url": "https://example.com/a.jpg", "width": 1.5}`,
		`{"url": "https://example.com/a.jpg", "width": 1e3}`,
		`{"url": "https://example.com/a.jpg", "width": 99999999999999999999}`,
		`{"url": "https://example.com/a.jpg", "width": -1}`,
		`{"url": "https://example.com/a.jpg", "width": null, "height": null}`,
		`{"url": ["a"], "enlarge": "yes"}`,
		`{"url": {"nested": true}}`,
		`{"URL": "https://example.com/a.jpg", "Width": 5}`,
		`{"image": "aGVsbG8=", "width": 5}`,
		`{"url": "https://example.com/a.jpg", "width": 5, "unknown": 1}`,
		`{"url": "https://example.com/a.jpg", "width": 5}{"url": "x"}`,
		`{"url": "https://example.com/a.jpg", "width": 5} trailing`,
		`{"url": `,
		`{"url": "\ud800"}`,
		`{"email": "a@b.c\r\nBcc: x@y.z", "url": "https://e.com/a.jpg", "width": 1}`,
		`[]`,
		`null`,
		`"a string"`,
		``,
		" \t\n",
		"\xef\xbb\xbf{}",
		`{"url": "file:///etc/passwd", "width": 1}`,
		`{"url": "https://example.com/a.jpg", "width": 1, "callback_url": "gopher://x"}`,
		`{"url": "https://` + strings.Repeat("a", 300) + `.com/", "width": 1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeJSON(bytes.NewReader(body))
		checkDecoded(t, req, err)

		// And the same through decodeRequest, which picks the decoder.
		r := httptest.NewRequest(http.MethodPost, "/v1/thumbnails", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json; charset=utf-8")
		req2, err2 := decodeRequest(r, fuzzMaxUpload, memorySink)
		checkDecoded(t, req2, err2)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("decodeJSON said %v but decodeRequest said %v", err, err2)
		}
	})
}

// multipartSeed builds a form with fields in order and, unless image is nil,
// the image part last.
func multipartSeed(boundary string, image []byte, fields ...string) []byte {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.SetBoundary(boundary)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = mw.WriteField(fields[i], fields[i+1])
	}
	if image != nil {
		w, _ := mw.CreateFormFile("image", "cat.jpg")
		_, _ = w.Write(image)
	}
	_ = mw.Close()
	return buf.Bytes()
}

func FuzzDecodeRequestMultipart(f *testing.F) {
	const b = "fuzzboundary"
	ct := "multipart/form-data; boundary=" + b
	gif := []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
	jpeg, err := os.ReadFile("../thumbnail/testdata/photos/go-video-001.jpeg")
	if err != nil {
		f.Fatal(err)
	}
	jpeg = jpeg[:min(len(jpeg), fuzzMaxUpload)] // a truncated JPEG: the header still reads

	seeds := [][]byte{
		multipartSeed(b, gif, "width", "64"),
		multipartSeed(b, jpeg, "width", "64", "height", "48", "fit", "cover", "enlarge", "true", "format", "png", "quality", "90", "email", "me@example.com", "callback_url", "https://me.example.com/hook"),
		multipartSeed(b, nil, "url", "https://example.com/cat.jpg", "width", "64"),
		multipartSeed(b, gif, "url", "https://example.com/cat.jpg", "width", "64"),
		multipartSeed(b, gif, "width", "0", "height", "-3", "quality", "abc", "enlarge", "maybe", "fit", "x", "format", "gif"),
		multipartSeed(b, gif, "width", "64", "width", "65"),
		multipartSeed(b, gif, "width", "64", "colour", "red"),
		multipartSeed(b, gif, "width", strings.Repeat("9", maxFieldBytes+1)),
		multipartSeed(b, []byte("<?php phpinfo(); ?>"), "width", "64"),
		multipartSeed(b, []byte{}, "width", "64"),
		multipartSeed(b, bytes.Repeat([]byte{0xff}, fuzzMaxUpload+1), "width", "64"),
		multipartSeed(b, nil, "url", "http://[::ffff:127.0.0.1]/", "width", "64", "callback_url", "http://2130706433/"),
		[]byte("--" + b + "\r\nContent-Disposition: form-data; name=\"width\"\r\n\r\n64\r\n"), // no closing boundary
		[]byte("--" + b + "\r\n\r\nno headers\r\n--" + b + "--\r\n"),
		[]byte("--" + b + "\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--" + b + "--\r\n"),
		[]byte("--" + b + "\r\nContent-Disposition: form-data; name=\"image\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGIF89a=01=00\r\n--" + b + "--\r\n"),
		[]byte("--" + b + "\r\nContent-Disposition: form-data; name=\"width\"\r\n" + strings.Repeat("X-Pad: y\r\n", 200) + "\r\n1\r\n--" + b + "--\r\n"),
		[]byte("--" + b + "--\r\n"),
		[]byte("not multipart at all"),
		{},
	}
	for _, s := range seeds {
		f.Add(s, ct)
	}
	f.Add(seeds[0], "multipart/form-data")                          // no boundary
	f.Add(seeds[0], "multipart/form-data; boundary=")               // empty boundary
	f.Add(seeds[0], "multipart/form-data; boundary=\"fuzzboundary") // unterminated quote
	f.Add(seeds[0], "multipart/mixed; boundary=fuzzboundary")
	f.Add(seeds[0], "image/jpeg")
	f.Add(seeds[0], "")
	f.Add(seeds[0], "application/json")

	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		r := httptest.NewRequest(http.MethodPost, "/v1/thumbnails", bytes.NewReader(body))
		r.Header = http.Header{textproto.CanonicalMIMEHeaderKey("Content-Type"): {contentType}}
		req, err := decodeRequest(r, fuzzMaxUpload, memorySink)
		checkDecoded(t, req, err)

		// And the multipart decoder alone, with the boundary the seeds use.
		req, err = decodeMultipart(multipart.NewReader(bytes.NewReader(body), b), fuzzMaxUpload, memorySink)
		checkDecoded(t, req, err)
		if err == nil && req.upload != nil && req.upload.bytes > fuzzMaxUpload {
			t.Fatalf("an upload of %d bytes passed the %d-byte limit", req.upload.bytes, fuzzMaxUpload)
		}
	})
}

// manyParts is a multipart body of small fields with names never seen
// before, max bytes long, without a closing boundary.
type manyParts struct {
	n         int
	sent, max int64
}

func (p *manyParts) Read(b []byte) (int, error) {
	if p.sent >= p.max {
		return 0, io.EOF
	}
	n := copy(b, fmt.Sprintf("--b\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nx\r\n", p.n))
	p.n++
	p.sent += int64(n)
	return n, nil
}

func TestHostileChunkedMultipartBodyIsBounded(t *testing.T) {
	// A body without a Content-Length (chunked) of endless small parts:
	// before the fix every part was read and every name listed in the 422,
	// so 32 MiB in made a 30 MB answer, and the read only ended when the
	// client stopped.
	is := is.New(t)
	const maxUpload = 64 << 10
	api := newTestAPI(t, Config{MaxUploadBytes: maxUpload})
	body := &manyParts{max: 32 << 20}
	req := httptest.NewRequest(http.MethodPost, "/v1/thumbnails", io.MultiReader(body))
	req.Header.Set("Content-Type", "multipart/form-data; boundary=b")
	is.Equal(req.ContentLength, int64(-1)) // no declared length

	// Straight to the handler, to count what it reads, not socket buffers.
	rec := httptest.NewRecorder()
	api.handler.ServeHTTP(rec, req)

	t.Logf("read %d bytes (%d parts) with a %d-byte upload limit; answered %d in %d bytes", body.sent, body.n, maxUpload, rec.Code, rec.Body.Len())
	is.Equal(rec.Code, http.StatusRequestEntityTooLarge)
	is.Equal(rec.Header().Get("Content-Type"), "application/problem+json")
	is.True(strings.Contains(rec.Body.String(), `"code":"upload_too_large"`))
	is.True(body.sent <= maxUpload+1<<20+64<<10) // the limit and one buffer, not the 32 MiB on offer
}
