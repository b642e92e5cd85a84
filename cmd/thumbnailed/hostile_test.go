package main

import (
	"bufio"
	"bytes"
	"fmt"
	"image"
	"image/draw"
	"image/gif"
	_ "image/png"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"
)

// Hostile input through the real program (issue 5, item 4): every file of
// testdata/hostile (copied with its MANIFEST.tsv row from
// shared/testdata/images) is submitted as an upload and as a URL source,
// and each ends refused at submit or failed with a specific code, or, when
// its manifest row allows one, as a clean thumbnail; and the service keeps
// serving. Then the three resource bounds: bytes, time and memory.

// hostileWant is what the service answers for one hostile file with the
// pure-Go engine.
type hostileWant struct {
	code string // the error code; "" means a thumbnail
	// atSubmit: an upload is refused at submit, from its header (415 for
	// unsupported_format, else 422); otherwise it is accepted and its job
	// fails (or succeeds) in the worker. A URL source always reaches the worker.
	atSubmit bool
}

var hostileWants = map[string]hostileWant{
	"hostile/bomb/bmpsuite-b-reallybig.bmp":                                     {"unsupported_format", true},
	"hostile/bomb/fuzzdb-lottapixel.jpg":                                        {"too_many_pixels", true},
	"hostile/bomb/libvips-17000x17000.avif":                                     {"unsupported_format", true},
	"hostile/bomb/pillow-decompression_bomb.gif":                                {"too_many_pixels", true},
	"hostile/bomb/pillow-png_decompression_dos.png":                             {"", false},
	"hostile/bomb/saferimg-pngbomb-32000x32000.png":                             {"too_many_pixels", true},
	"hostile/corrupt/go-png-invalid-crc32.png":                                  {"corrupt_image", true},
	"hostile/corrupt/go-png-invalid-zlib.png":                                   {"corrupt_image", false},
	"hostile/corrupt/pillow-broken.png":                                         {"corrupt_image", true},
	"hostile/corrupt/sharp-corrupt-header.jpg":                                  {"corrupt_image", true},
	"hostile/fuzz/bmpsuite-b-badbitcount.bmp":                                   {"unsupported_format", true},
	"hostile/fuzz/bmpsuite-b-badrle.bmp":                                        {"unsupported_format", true},
	"hostile/fuzz/goimage-tiff-0x0.tiff":                                        {"unsupported_format", true},
	"hostile/fuzz/libheif-clap-overflow-divide-zero.heic":                       {"unsupported_format", true},
	"hostile/fuzz/libheif-crash-20ca2625096a205937b809a7841e7f019f0b2dc6.heic":  {"unsupported_format", true},
	"hostile/fuzz/libheif-uaf_heif_context.h_117_1.heic":                        {"unsupported_format", true},
	"hostile/fuzz/pillow-crash-2020-10-test.tif":                                {"unsupported_format", true},
	"hostile/fuzz/pillow-crash-86214e58da443d2b80820cff9677a38a33dcbbca.tif":    {"unsupported_format", true},
	"hostile/fuzz/pillow-oom-225817ca0f8c663be7ab4b9e717b02c661e66834.tif":      {"unsupported_format", true},
	"hostile/fuzz/imagetestsuite-gif-2b5bc31d84703bfb9f371925f0e3e57d.gif":      {"corrupt_image", false},
	"hostile/fuzz/imagetestsuite-gif-55abb3cc464305dd554171c3d44cb61f.gif":      {"corrupt_image", false},
	"hostile/fuzz/imagetestsuite-gif-e34116d68f49c7852b362ec72a636df5.gif":      {"corrupt_image", true},
	"hostile/fuzz/imagetestsuite-jpg-28968137f4fc75fbf56f16d7a7a8551a.jpg":      {"corrupt_image", true},
	"hostile/fuzz/imagetestsuite-jpg-4085c929e00c446d3fee18b5b20a27f9.jpg":      {"corrupt_image", false},
	"hostile/fuzz/imagetestsuite-jpg-5633ed9d0eb700d0093bf85d86a95ebf.jpg":      {"corrupt_image", true},
	"hostile/fuzz/imagetestsuite-jpg-8a9cc8eeed66aeb423a91c44111d9450.jpg":      {"corrupt_image", false},
	"hostile/fuzz/imagetestsuite-jpg-c52ffdd6a0346c4d09271f8ccbdfd5a3.jpg":      {"corrupt_image", false},
	"hostile/fuzz/imagetestsuite-png-3625f98e00148cdc136c53bdcd2d2e1e.png":      {"corrupt_image", true},
	"hostile/fuzz/imagetestsuite-png-4aae896ba900c48c63cffc0cc9f8c4dc.png":      {"corrupt_image", true},
	"hostile/fuzz/imagetestsuite-png-71dd006377602359ebd2cbe7b9eaab09.png":      {"corrupt_image", true},
	"hostile/fuzz/imagetestsuite-png-c-ea01d6c175bb25dc75757cf8a5793822.png":    {"corrupt_image", true},
	"hostile/fuzz/imagetestsuite-png-c-m6-a46ce91d8975a017917156b8824f936e.png": {"corrupt_image", false},
	"hostile/misc/corkami-html-document.jpg":                                    {"unsupported_format", true},
	"hostile/misc/empty.jpg":                                                    {"unsupported_format", true},
	"hostile/misc/imgproxy-test1-xss.svg":                                       {"unsupported_format", true},
	"hostile/misc/patt-imagetragick-mvg-url-touch.jpg":                          {"unsupported_format", true},
	"hostile/polyglot/fuzzdb-POC_img_phpinfo-CR.gif":                            {"corrupt_image", true},
	"hostile/polyglot/fuzzdb-POC_phpinfo-metadata.jpg":                          {"", false},
	"hostile/truncated/go-png-invalid-trunc.png":                                {"corrupt_image", false},
	"hostile/truncated/go-video-001.progressive.truncated.jpeg":                 {"corrupt_image", false}, // the manifest allows a thumbnail
	"hostile/truncated/pillow-truncated_image.png":                              {"corrupt_image", false},
	"hostile/truncated/sharp-truncated.jpg":                                     {"corrupt_image", false},
}

// hostileOverlooked lists the files whose one defect the engine's decoder skips on
// purpose: it makes a thumbnail where the manifest says reject. Set per engine
// (hostile_vips_test.go).
var hostileOverlooked = map[string]bool{}

// hostileManifestRow is one line of testdata/MANIFEST.tsv.
type hostileManifestRow struct {
	File, Category, Format, Expected string
}

func readHostileManifest(t *testing.T) []hostileManifestRow {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []hostileManifestRow
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) < 8 {
			t.Fatalf("MANIFEST.tsv line with %d fields: %q", len(fields), sc.Text())
		}
		rows = append(rows, hostileManifestRow{File: fields[0], Category: fields[1], Format: fields[2], Expected: fields[5]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// hostileRows are the manifest rows of every file under testdata/hostile,
// checked against the files on disk and against hostileWants.
func hostileRows(t *testing.T) []hostileManifestRow {
	t.Helper()
	byFile := map[string]hostileManifestRow{}
	for _, r := range readHostileManifest(t) {
		byFile[r.File] = r
	}
	var rows []hostileManifestRow
	err := filepath.WalkDir(filepath.Join("testdata", "hostile"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel("testdata", path)
		rel = filepath.ToSlash(rel)
		row, ok := byFile[rel]
		if !ok {
			t.Errorf("%s has no row in testdata/MANIFEST.tsv", rel)
			return nil
		}
		want, ok := hostileWants[rel]
		if !ok {
			t.Errorf("%s: add what the service must answer to hostileWants", rel)
			return nil
		}
		// The table says what the manifest says, for this engine.
		thumbnail := strings.HasPrefix(row.Expected, "thumbnail") || hostileOverlooked[rel]
		if thumbnail != (want.code == "") {
			t.Errorf("%s: hostileWants says %q but the manifest says %q", rel, want.code, row.Expected)
		}
		rows = append(rows, row)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(hostileWants) {
		t.Fatalf("%d hostile files on disk, %d in hostileWants", len(rows), len(hostileWants))
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].File < rows[j].File })
	return rows
}

// hostileMayRecover reports whether the manifest also accepts a thumbnail from a
// lenient decoder ("reject: truncated JPEG (or thumbnail of …").
func hostileMayRecover(row hostileManifestRow) bool {
	return strings.Contains(row.Expected, "or thumbnail") || strings.Contains(row.Expected, "or partial thumbnail")
}

// hostileFileServer serves testdata by path, always claiming image/jpeg: the type
// must be sniffed from the bytes.
func hostileFileServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		name := filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/"))
		if !filepath.IsLocal(name) {
			http.NotFound(w, r)
			return
		}
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "image/jpeg")
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv, &requests
}

// hostileImageBytes GETs a job's thumbnail as bytes.
func hostileImageBytes(t *testing.T, svc *service, id string) ([]byte, string) {
	t.Helper()
	r := svc.Do(t, http.MethodGet, "/v1/thumbnails/"+id+"/image", nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET image of %s: %d %s", id, r.Status, r.Body)
	}
	return r.Body, r.Header.Get("Content-Type")
}

// hostileJPEGMetadata lists the metadata segments of a JPEG (APP1..APP15, COM): an
// "APP1 Exif" is EXIF, an "APP1 http://ns.adobe.com/xap/…" XMP, and so on.
func hostileJPEGMetadata(b []byte) []string {
	var found []string
	p := 2 // after SOI
	for p+4 <= len(b) && b[p] == 0xff {
		marker := b[p+1]
		if marker == 0xda || marker == 0xd9 { // start of scan, end of image
			break
		}
		n := int(b[p+2])<<8 | int(b[p+3])
		seg := b[p+4 : min(len(b), p+2+n)]
		switch {
		case marker >= 0xe1 && marker <= 0xef:
			found = append(found, fmt.Sprintf("APP%d %q", marker-0xe0, seg[:min(len(seg), 24)]))
		case marker == 0xfe:
			found = append(found, fmt.Sprintf("COM %q", seg[:min(len(seg), 24)]))
		}
		p += 2 + n
	}
	return found
}

func TestHostileFilesAreRefusedOrFailWithASpecificCode(t *testing.T) {
	rows := hostileRows(t)
	svc := startService(t, "all", nil)
	src, _ := hostileFileServer(t)

	type submitted struct {
		row hostileManifestRow
		via string // "upload" or "url"
		id  string
	}
	var pending []submitted
	refused := 0
	for _, row := range rows {
		want := hostileWants[row.File]
		data := readFile(t, row.File)

		r := svc.Upload(t, data, map[string]string{"width": "64"}, nil)
		if want.atSubmit {
			wantStatus := http.StatusUnprocessableEntity
			if want.code == "unsupported_format" {
				wantStatus = http.StatusUnsupportedMediaType
			}
			if r.Status != wantStatus || r.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("upload %s: %d %s, want %d %s", row.File, r.Status, r.Body, wantStatus, want.code)
			} else if p := r.Problem(t); p.Code != want.code || p.Detail == "" {
				t.Errorf("upload %s: %d %q %q, want %d %s with a detail", row.File, r.Status, p.Code, p.Detail, wantStatus, want.code)
			}
			refused++
		} else {
			if r.Status != http.StatusAccepted {
				t.Errorf("upload %s: %d %s, want 202", row.File, r.Status, r.Body)
			} else {
				pending = append(pending, submitted{row, "upload", r.Job(t).ID})
			}
		}

		r = svc.Submit(t, map[string]any{"url": src.URL + "/" + row.File, "width": 64}, nil)
		if r.Status != http.StatusAccepted {
			t.Errorf("url %s: %d, want 202", row.File, r.Status)
			continue
		}
		pending = append(pending, submitted{row, "url", r.Job(t).ID})
	}

	thumbnails := 0
	for _, s := range pending {
		want := hostileWants[s.row.File]
		job := svc.WaitEnded(t, s.id, jobTimeout) // never stuck: each ends within 60 s
		name := s.via + " " + s.row.File
		if job.Error != nil && (job.Error.Code == "internal_error" || job.Error.Code == "worker_crashed") {
			t.Errorf("%s: %s %q; hostile input must get a code that names its fault", name, job.Error.Code, job.Error.Message)
			continue
		}
		if want.code == "" || job.Status == "succeeded" && hostileMayRecover(s.row) {
			if job.Status != "succeeded" {
				t.Errorf("%s: %s %+v, want a thumbnail (manifest: %s)", name, job.Status, job.Error, s.row.Expected)
				continue
			}
			thumbnails++
			out, ct := hostileImageBytes(t, svc, job.ID)
			img, format, err := image.Decode(bytes.NewReader(out))
			if err != nil || format != "jpeg" || ct != "image/jpeg" || img.Bounds().Dx() != job.Result.Width {
				t.Errorf("%s: the thumbnail is not a clean %dx%d JPEG (%s, %s): %v", name, job.Result.Width, job.Result.Height, format, ct, err)
			}
			// Whatever rode in the source's metadata stays behind.
			if bytes.Contains(out, []byte("<?php")) {
				t.Errorf("%s: the thumbnail carries the source's PHP", name)
			}
			if md := hostileJPEGMetadata(out); len(md) > 0 {
				t.Errorf("%s: the thumbnail carries metadata segments %v", name, md)
			}
			continue
		}
		if job.Status != "failed" || job.Error == nil || job.Error.Code != want.code || job.Error.Message == "" {
			t.Errorf("%s: %s %+v, want failed with %s", name, job.Status, job.Error, want.code)
			continue
		}
		// The failure is visible on the image too.
		r := svc.Do(t, http.MethodGet, "/v1/thumbnails/"+job.ID+"/image", nil, nil)
		if r.Status != http.StatusConflict || r.Problem(t).Code != want.code {
			t.Errorf("%s: GET image answered %d %s, want 409 %s", name, r.Status, r.Body, want.code)
		}
	}
	t.Logf("%d files: %d uploads refused at submit, %d jobs ended (%d with a thumbnail)", len(rows), refused, len(pending), thumbnails)

	is := is.New(t)
	is.True(thumbnails >= 4) // the PHP polyglot and the zTXt bomb, by upload and by URL
	// No decoder panicked, not even into a recovered corrupt_image.
	is.True(!strings.Contains(svc.Logs.String(), "panic"))

	// And a good image is still served.
	job := svc.WaitEnded(t, accepted(t, svc.Upload(t, readFile(t, "go-video-001.jpeg"), map[string]string{"width": "50"}, nil)).ID, jobTimeout)
	is.Equal(job.Status, "succeeded")
}

func TestHostilePolyglotReallyCarriesPHPInItsMetadata(t *testing.T) {
	// The check above means something only if the source has what it strips.
	is := is.New(t)
	src := readFile(t, "hostile/polyglot/fuzzdb-POC_phpinfo-metadata.jpg")
	is.True(bytes.Contains(src, []byte("<?php")))
	md := strings.Join(hostileJPEGMetadata(src), " ")
	is.True(strings.Contains(md, `APP1 "Exif`)) // EXIF in APP1
}

// hostileStreamServer sends a JPEG signature and then zeros, chunked (no
// Content-Length), until the reader hangs up or 256 MiB have gone. With
// declare set it sends a Content-Length of that many bytes instead.
type hostileStreamServer struct {
	*httptest.Server
	sent    atomic.Int64
	handled sync.WaitGroup
}

func newHostileStreamServer(t *testing.T) *hostileStreamServer {
	t.Helper()
	s := &hostileStreamServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.handled.Add(1)
		defer s.handled.Done()
		if r.URL.Query().Get("declare") != "" {
			w.Header().Set("Content-Length", r.URL.Query().Get("declare"))
		}
		w.Header().Set("Content-Type", "image/jpeg")
		chunk := make([]byte, 32<<10)
		copy(chunk, "\xff\xd8\xff\xe0")
		for s.sent.Load() < 256<<20 {
			n, err := w.Write(chunk)
			s.sent.Add(int64(n))
			if err != nil || r.Context().Err() != nil {
				return
			}
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			chunk = make([]byte, 32<<10)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func TestHostileSourceLargerThanTheLimitFailsSourceTooLarge(t *testing.T) {
	is := is.New(t)
	const limit = 1 << 20
	svc := startService(t, "all", map[string]string{"THUMBNAILED_MAX_UPLOAD_BYTES": fmt.Sprint(limit)})

	for _, c := range []struct{ name, query string }{
		{"streamed without a Content-Length", ""},
		{"declaring its size", fmt.Sprintf("?declare=%d", 64<<20)},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			src := newHostileStreamServer(t)
			job := svc.urlJob(t, src.URL+"/big.jpg"+c.query, 64)
			is.Equal(job.Status, "failed")
			is.Equal(job.Error.Code, "source_too_large")
			is.True(strings.Contains(job.Error.Message, fmt.Sprint(limit))) // the message names the limit

			// The download was cut off: the source's handler ends because
			// the worker hung up, not because it ran out of bytes to send.
			done := make(chan struct{})
			go func() { src.handled.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the source is still being read 10 s after the job failed")
			}
			t.Logf("the source sent %d bytes (%.1f MiB) against a %d-byte limit", src.sent.Load(), float64(src.sent.Load())/(1<<20), limit)
			is.True(src.sent.Load() < 32<<20) // the limit plus what socket buffers hold, not the 256 MiB on offer
		})
	}

	// An upload over the limit is refused while it streams in. (Its first
	// bytes are an image: bytes that are not are refused sooner, 415, by
	// the sniff of the first bytes that comes before the streaming.)
	big := append(readFile(t, "go-video-001.jpeg"), make([]byte, limit)...)
	r := svc.Upload(t, big, map[string]string{"width": "64"}, nil)
	is.Equal(r.Status, http.StatusRequestEntityTooLarge)
	is.Equal(r.Problem(t).Code, "upload_too_large")
}

// hostileParts is a multipart body of small fields with names never seen
// before, streamed up to max bytes.
type hostileParts struct {
	n         int
	sent, max atomic.Int64
}

func (p *hostileParts) Read(b []byte) (int, error) {
	if p.sent.Load() >= p.max.Load() {
		return 0, io.EOF
	}
	n := copy(b, fmt.Sprintf("--b\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nx\r\n", p.n))
	p.n++
	p.sent.Add(int64(n))
	return n, nil
}

func TestHostileChunkedUploadIsCutOffAtTheLimit(t *testing.T) {
	// Without a Content-Length the API cannot refuse a body up front: it
	// must stop reading at the limit (image plus 1 MiB of form fields).
	is := is.New(t)
	const limit = 1 << 20
	svc := startService(t, "all", map[string]string{"THUMBNAILED_MAX_UPLOAD_BYTES": fmt.Sprint(limit)})
	body := &hostileParts{}
	body.max.Store(256 << 20)
	// A body of unknown length: sent chunked.
	r := svc.Do(t, http.MethodPost, "/v1/thumbnails", body, http.Header{"Content-Type": {"multipart/form-data; boundary=b"}})
	t.Logf("sent %d bytes of a 256 MiB stream with a %d-byte limit; answered %d %s", body.sent.Load(), limit, r.Status, r.Body)
	is.Equal(r.Status, http.StatusRequestEntityTooLarge)
	is.Equal(r.Problem(t).Code, "upload_too_large")
	is.True(body.sent.Load() < 32<<20) // the limit and socket buffers, not the whole stream
}

func TestHostileSlowSourceOverrunsTheJobTimeout(t *testing.T) {
	is := is.New(t)
	svc := startService(t, "all", map[string]string{
		"THUMBNAILED_JOB_TIMEOUT":   "1s",
		"THUMBNAILED_FETCH_TIMEOUT": "30s", // the job's deadline must be the one that ends it
	})
	storm := readFile(t, "Storm.jpg")
	var open sync.WaitGroup
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		open.Add(1)
		defer open.Done()
		switch r.URL.Path {
		case "/trickle.jpg": // a real JPEG, one byte every 100 ms
			w.Header().Set("Content-Type", "image/jpeg")
			for i := 0; i < len(storm); i++ {
				if _, err := w.Write(storm[i : i+1]); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		case "/silent.jpg": // accepts the connection and never answers
			<-r.Context().Done()
		}
	}))
	defer src.Close()

	start := time.Now()
	var ids []string
	for _, path := range []string{"/trickle.jpg", "/silent.jpg"} {
		ids = append(ids, svc.submitURL(t, src.URL+path, 64).ID)
	}
	for _, id := range ids {
		job := svc.WaitEnded(t, id, jobTimeout)
		is.Equal(job.Status, "failed")
		is.Equal(job.Error.Code, "timeout")
		is.True(job.Error.Message != "")
	}
	took := time.Since(start)
	t.Logf("both jobs timed out %s after submit (THUMBNAILED_JOB_TIMEOUT=1s)", took.Round(time.Millisecond))
	is.True(took < 8*time.Second) // the job's deadline, not the 30 s download limit

	// The worker hung up on both sources.
	done := make(chan struct{})
	go func() { open.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a slow source is still connected after its job timed out")
	}

	// And the service still makes thumbnails.
	is.Equal(svc.WaitEnded(t, accepted(t, svc.Upload(t, readFile(t, "go-video-001.jpeg"), map[string]string{"width": "50"}, nil)).ID, jobTimeout).Status, "succeeded")
}

// hostileGIFFrames composes every frame of an animated GIF onto its canvas, as a
// viewer shows them.
func hostileGIFFrames(t *testing.T, data []byte) []image.Image {
	t.Helper()
	all, err := gif.DecodeAll(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	canvas := image.NewRGBA(image.Rect(0, 0, all.Config.Width, all.Config.Height))
	var frames []image.Image
	for i, f := range all.Image {
		op := draw.Over
		if i == 0 {
			op = draw.Src
		}
		draw.Draw(canvas, f.Bounds(), f, f.Bounds().Min, op)
		c := image.NewRGBA(canvas.Rect)
		copy(c.Pix, canvas.Pix)
		frames = append(frames, c)
		if all.Disposal[i] == gif.DisposalBackground {
			draw.Draw(canvas, f.Bounds(), image.Transparent, image.Point{}, draw.Src)
		}
	}
	return frames
}

func TestHostileAnimatedImagesGiveTheFirstFrame(t *testing.T) {
	svc := startService(t, "all", nil)
	squares := hostileGIFFrames(t, readFile(t, "formats/gif/sharp-rotating-squares.gif"))
	dispose := hostileGIFFrames(t, readFile(t, "formats/gif/pillow-dispose_bgnd.gif"))

	for _, c := range []struct {
		file   string
		size   int
		frames []image.Image // frame 0 and a later, different one
		close  float64       // how near the first frame the thumbnail must be (lossy WebP needs room)
	}{
		{"formats/gif/sharp-rotating-squares.gif", 80, []image.Image{squares[0], squares[4]}, 1},
		{"formats/gif/pillow-dispose_bgnd.gif", 100, []image.Image{dispose[0], dispose[1]}, 1},
		// The same animation as WebP (lossy): judged against the GIF's frames.
		{"formats/webp/sharp-rotating-squares.webp", 80, []image.Image{squares[0], squares[4]}, 5},
	} {
		t.Run(c.file, func(t *testing.T) {
			is := is.New(t)
			// PNG out at the source's size: a comparison without resampling or JPEG loss.
			job := svc.WaitEnded(t, accepted(t, svc.Upload(t, readFile(t, c.file), map[string]string{"width": fmt.Sprint(c.size), "format": "png"}, nil)).ID, jobTimeout)
			if job.Status != "succeeded" {
				t.Fatalf("%s %+v, want the first frame as a thumbnail", job.Status, job.Error)
			}
			img, format, _ := svc.image(t, job.Result.ImageURL)
			is.Equal(format, "png")
			is.Equal(img.Bounds().Size(), image.Pt(c.size, c.size))
			first, later := meanDiff(img, c.frames[0]), meanDiff(img, c.frames[1])
			t.Logf("mean difference to the first frame %.1f, to a later one %.1f", first, later)
			is.True(first < c.close) // it is the first frame
			is.True(first < later)   // and not another one
		})
	}
}

// hostileHeapSampler records the largest heap the process reaches.
type hostileHeapSampler struct {
	stop               chan struct{}
	done               chan struct{}
	maxAlloc, maxSys   uint64
	baseAlloc, samples uint64
}

func hostileSampleHeap(every time.Duration) *hostileHeapSampler {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h := &hostileHeapSampler{stop: make(chan struct{}), done: make(chan struct{}), baseAlloc: ms.HeapAlloc}
	go func() {
		defer close(h.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			h.samples++
			h.maxAlloc = max(h.maxAlloc, ms.HeapAlloc)
			h.maxSys = max(h.maxSys, ms.HeapSys)
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *hostileHeapSampler) Stop() { close(h.stop); <-h.done }

func TestHostilePeakHeap(t *testing.T) {
	is := is.New(t)
	rows := hostileRows(t)
	svc := startService(t, "all", nil) // the API and the workers in this process
	src, _ := hostileFileServer(t)

	heap := hostileSampleHeap(2 * time.Millisecond)
	start := time.Now()
	var ids []string
	for _, row := range rows {
		// Through the worker by URL, and through the API's header check by upload.
		ids = append(ids, svc.submitURL(t, src.URL+"/"+row.File, 256).ID)
		if r := svc.Upload(t, readFile(t, row.File), map[string]string{"width": "256"}, nil); r.Status == http.StatusAccepted {
			ids = append(ids, r.Job(t).ID)
		}
	}
	for _, id := range ids {
		job := svc.WaitEnded(t, id, jobTimeout)
		is.True(job.Error == nil || job.Error.Code != "internal_error")
	}
	heap.Stop()

	mib := func(b uint64) uint64 { return (b + 1<<20 - 1) >> 20 }
	t.Logf("%d hostile files, %d jobs in %s; heap before %d MiB; %d samples", len(rows), len(ids), time.Since(start).Round(time.Millisecond), mib(heap.baseAlloc), heap.samples)
	t.Logf("PEAK_HEAP_MIB=%d", mib(heap.maxAlloc))
	t.Logf("PEAK_HEAP_SYS_MIB=%d", mib(heap.maxSys))
	is.True(heap.samples > 10)
	is.True(heap.maxAlloc < 512<<20) // the bombs were refused before they cost memory
	is.True(heap.maxSys < 512<<20)
}
