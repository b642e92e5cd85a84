package server

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/thumbnail"
)

// budget bounds the upload bytes this process holds at once
// (THUMBNAILED_MAX_INFLIGHT_UPLOAD_BYTES): past it, an upload is refused
// with 503 and Retry-After instead of growing memory with the clients.
type budget struct {
	max  int64
	held atomic.Int64
}

// take holds n more bytes, or reports that the budget has no room.
func (b *budget) take(n int64) bool {
	if b.held.Add(n) > b.max {
		b.held.Add(-n)
		return false
	}
	return true
}

func (b *budget) give(n int64) { b.held.Add(-n) }

// holding is the bytes one request holds against the budget, handed back
// at its end.
type holding struct {
	b    *budget
	held int64
}

func (h *holding) take(n int64) bool {
	if n <= 0 {
		return true
	}
	if !h.b.take(n) {
		return false
	}
	h.held += n
	return true
}

func (h *holding) release() { h.b.give(h.held); h.held = 0 }

func busy() *Problem {
	p := problem(codes.UploadsBusy, "this server is receiving as many uploads as it can hold; retry after the time in Retry-After")
	p.retryAfter = "2"
	return p
}

// headerWindow is how much of an upload is looked at before it is stored:
// enough for the magic bytes and, for nearly every image, the header with
// its size (EXIF segments come before a JPEG's frame header).
const headerWindow = 256 << 10

// streamHold is what a streamed upload holds in memory: the header window
// and one part of the blob store's multipart upload.
const streamHold = headerWindow + 5<<20 + 64<<10

// uploadSink stores the image part of a request as it arrives, under job
// id: its first bytes are sniffed (never the name or the declared type) and
// its header read, so what can be refused is refused before it is stored;
// then it streams to the blob store (or, for a store that keeps whole
// objects, is buffered against the budget). The bytes are counted and
// hashed on the way for the Idempotency-Key's fingerprint.
type uploadSink struct {
	ctx       context.Context
	id        string
	blobs     Blobs
	store     Store
	engine    thumbnail.Engine
	maxPixels int64
	ttl       time.Duration // the result TTL: an upload lives at most as long as its job
	hold      *holding
	stored    bool
}

func (s *uploadSink) take(r io.Reader) (*upload, error) {
	first := int64(streamHold)
	if s.blobs.Buffered() {
		first = headerWindow
	}
	if !s.hold.take(first) {
		return nil, busy()
	}
	br := bufio.NewReaderSize(r, headerWindow)
	head, err := br.Peek(headerWindow)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		if errors.Is(err, errTooLarge) {
			return nil, err
		}
		return nil, problem(codes.MalformedBody, "the upload could not be read: "+err.Error())
	}
	h, p := checkUpload(head, s.maxPixels, s.engine)
	if p != nil {
		return nil, p
	}
	// Marked for collection before the first byte is stored: should the
	// submit never happen, the sweeper still deletes it.
	// The mark is within the result TTL when that is shorter than the
	// grace, so no upload of a submit cut short by a crash outlives the jobs.
	grace := orphanUploadGrace
	if s.ttl > 0 {
		grace = min(grace, s.ttl)
	}
	rctx, cancel := context.WithTimeout(s.ctx, storageDeadline)
	err = s.store.Reserve(rctx, s.id, time.Now().Add(grace))
	cancel()
	if err != nil {
		return nil, err
	}
	sum := sha256.New()
	var in io.Reader = io.TeeReader(br, sum)
	if s.blobs.Buffered() {
		in = &heldReader{r: in, hold: s.hold, free: headerWindow}
	}
	// The store goes at the client's pace while the body arrives, and has
	// storageDeadline once all of it has: a store that stalls then answers
	// 503, not a hang.
	pctx, stop := context.WithCancelCause(s.ctx)
	defer stop(nil)
	in = &endReader{r: in, end: func() {
		t := time.AfterFunc(storageDeadline, func() { stop(errStorageStalled) })
		context.AfterFunc(pctx, func() { t.Stop() })
	}}
	s.stored = true
	n, err := s.blobs.Put(pctx, s.id, jobs.UploadBlob, in, time.Now().Add(s.ttl+jobs.BlobMargin))
	var p2 *Problem
	switch {
	case err != nil && errors.Is(context.Cause(pctx), errStorageStalled):
		return nil, fmt.Errorf("%w: storing the upload: %w", blob.ErrUnavailable, errStorageStalled)
	case errors.Is(err, errTooLarge), errors.As(err, &p2):
		return nil, err
	case errors.Is(err, blob.ErrUnavailable):
		return nil, err
	case err != nil:
		return nil, problem(codes.MalformedBody, "the upload could not be read to its end")
	}
	return &upload{bytes: n, sha256: hex.EncodeToString(sum.Sum(nil)), header: h}, nil
}

// errStorageStalled: the blob store had not taken an upload storageDeadline
// after its last byte arrived.
var errStorageStalled = errors.New("the blob store did not answer in time")

// endReader calls end once, when its reader first reports the end or an
// error: the last byte of the upload has arrived.
type endReader struct {
	r    io.Reader
	end  func()
	done bool
}

func (e *endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !e.done {
		e.done = true
		e.end()
	}
	return n, err
}

// orphanUploadGrace is how long an upload stored for a submit that never
// happened stays; a submit that happens moves it to the job's expiry.
const orphanUploadGrace = 15 * time.Minute

// heldReader takes every byte it passes from the budget (beyond the free
// ones already taken): a store that buffers holds them all until the
// request ends.
type heldReader struct {
	r    io.Reader
	hold *holding
	free int64
}

func (h *heldReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	extra := int64(n)
	if h.free > 0 {
		used := min(extra, h.free)
		h.free -= used
		extra -= used
	}
	if !h.hold.take(extra) {
		return n, busy()
	}
	return n, err
}

// checkUpload sniffs the upload's first bytes and reads its header, so what
// can be refused at once is refused at submit.
func checkUpload(head []byte, maxPixels int64, engine thumbnail.Engine) (thumbnail.Header, *Problem) {
	h, err := thumbnail.ReadHeader(head)
	var te *thumbnail.Error
	switch {
	case errors.As(err, &te) && te.Code == thumbnail.CodeUnsupportedFormat:
		return h, problem(codes.UnsupportedFormat, te.Message)
	case errors.As(err, &te) && te.Code == thumbnail.CodeCorruptImage && len(head) >= headerWindow:
		// The header goes on past what was looked at: the worker reads it whole.
		if f, ferr := thumbnail.Sniff(head); ferr == nil && engine.Accepts(f) {
			return thumbnail.Header{Format: f}, nil
		}
		return h, problem(te.Code, te.Message)
	case errors.As(err, &te):
		return h, problem(te.Code, te.Message)
	case err != nil:
		return h, problem(codes.CorruptImage, "the image header could not be read")
	}
	if !engine.Accepts(h.Format) {
		return h, problem(codes.UnsupportedFormat,
			fmt.Sprintf("%s images need the libvips engine; this server runs the %s engine", h.Format, engine.Name()))
	}
	if px := int64(h.Width) * int64(h.Height); px > maxPixels {
		return h, problem(codes.TooManyPixels,
			fmt.Sprintf("the image is %dx%d pixels (%d); the limit is %d pixels", h.Width, h.Height, px, maxPixels))
	}
	return h, nil
}
