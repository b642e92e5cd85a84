package thumbnail

import (
	"context"
	"image"
	"slices"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/thumbnail/internal/testcorpus"
)

func TestReadHeaderAgreesWithTheManifest(t *testing.T) {
	for _, row := range testcorpus.Read(t, "testdata") {
		if expectedCode(row) != "" || row.Width == 0 {
			continue // only files this engine makes thumbnails of
		}
		t.Run(row.File, func(t *testing.T) {
			is := is.New(t)
			h, err := ReadHeader(readTestdata(t, row.File))
			is.NoErr(err)
			is.Equal([2]int{h.Width, h.Height}, [2]int{row.Width, row.Height})
		})
	}
}

func TestCheckPixels(t *testing.T) {
	is := is.New(t)
	h := Header{Format: FormatJPEG, Width: 64250, Height: 64250}
	err := h.CheckPixels(0) // the default limit
	is.Equal(CodeOf(err), CodeTooManyPixels)
	is.Equal(err.Error(), "the image is 64250x64250 pixels (4128062500); the limit is 50000000 pixels")
	is.NoErr(Header{Width: 100, Height: 100}.CheckPixels(10_000))
	is.Equal(CodeOf(Header{Width: 100, Height: 101}.CheckPixels(10_000)), CodeTooManyPixels)
}

// gifWith builds a GIF: a canvas, a global colour table of 2 entries, a graphic
// control extension, and one image descriptor for frame (no image data follows).
func gifWith(canvas, frame image.Rectangle) []byte {
	le := func(v int) []byte { return []byte{byte(v), byte(v >> 8)} }
	b := []byte("GIF89a")
	b = append(b, le(canvas.Dx())...)
	b = append(b, le(canvas.Dy())...)
	b = append(b, 0x80, 0, 0)                                   // global colour table of 2
	b = append(b, 0, 0, 0, 0xff, 0xff, 0xff)                    // black, white
	b = append(b, 0x21, 0xf9, 4, 0, 0, 0, 0, 0)                 // graphic control extension
	b = append(b, 0x21, 0xfe, 3, 'h', 'i', '!', 2, 'x', 'y', 0) // comment in two sub-blocks
	b = append(b, 0x2c)
	for _, v := range []int{frame.Min.X, frame.Min.Y, frame.Dx(), frame.Dy()} {
		b = append(b, le(v)...)
	}
	return append(b, 0)
}

func TestReadHeaderChecksTheGIFsFirstFrame(t *testing.T) {
	for _, c := range []struct {
		name   string
		src    []byte
		code   string
		header Header
	}{
		{"frame fills the canvas", gifWith(image.Rect(0, 0, 40, 30), image.Rect(0, 0, 40, 30)), "", Header{FormatGIF, 40, 30}},
		{"frame inside the canvas", gifWith(image.Rect(0, 0, 40, 30), image.Rect(5, 5, 25, 15)), "", Header{FormatGIF, 40, 30}},
		{"frame larger than the canvas", gifWith(image.Rect(0, 0, 32, 32), image.Rect(0, 0, 65535, 10751)), CodeTooManyPixels, Header{}},
		{"frame past the canvas's edge", gifWith(image.Rect(0, 0, 40, 30), image.Rect(30, 0, 50, 10)), CodeCorruptImage, Header{}},
		{"empty canvas", gifWith(image.Rect(0, 0, 0, 0), image.Rect(0, 0, 0, 0)), CodeCorruptImage, Header{}},
		{"no frame", []byte("GIF89a\x10\x00\x10\x00\x00\x00\x00\x3b"), CodeCorruptImage, Header{}},
		{"truncated in an extension", []byte("GIF89a\x10\x00\x10\x00\x00\x00\x00\x21\xfe\x05ab"), CodeCorruptImage, Header{}},
		{"truncated descriptor", []byte("GIF89a\x10\x00\x10\x00\x00\x00\x00\x2c\x00\x00"), CodeCorruptImage, Header{}},
		{"header only", []byte("GIF89a\x10\x00"), CodeCorruptImage, Header{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			h, err := ReadHeader(c.src)
			is.Equal(CodeOf(err), c.code)
			is.Equal(h, c.header)
		})
	}
}

func TestReadHeaderRefusesWhatIsNotAnImage(t *testing.T) {
	is := is.New(t)
	_, err := ReadHeader([]byte("%PDF-1.4"))
	is.Equal(CodeOf(err), CodeUnsupportedFormat)
	_, err = ReadHeader([]byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"))
	is.Equal(CodeOf(err), CodeCorruptImage) // a JPEG with no frame header
	_, err = ReadHeader([]byte("RIFF\x04\x00\x00\x00WEBP"))
	is.Equal(CodeOf(err), CodeCorruptImage)
}

func TestJPEGProcess(t *testing.T) {
	is := is.New(t)
	sof := func(marker byte) []byte {
		return []byte{0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0, 0xff, marker, 0, 8, 8, 0, 1, 0, 1, 1}
	}
	is.Equal(jpegProcess(sof(0xc0)), "")
	is.Equal(jpegProcess(sof(0xc2)), "")
	is.Equal(jpegProcess(sof(0xc3)), "lossless")
	is.Equal(jpegProcess(sof(0xc9)), "arithmetic")
	is.Equal(jpegProcess(sof(0xc5)), "hierarchical")
	is.Equal(jpegProcess([]byte{0xff, 0xd8}), "")
}

// riff wraps WebP chunks in a RIFF container with the right size.
func riff(chunks string) []byte {
	n := len(chunks) + 4
	return []byte("RIFF" + string([]byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}) + "WEBP" + chunks)
}

func TestWebPSizeComesFromTheCanvasBeforeAnyPixels(t *testing.T) {
	// An extended WebP declaring a 16000x16000 canvas with alpha, then an ALPH chunk
	// that would decode to 256 MB: the size is taken from the VP8X chunk and refused.
	is := is.New(t)
	src := riff("VP8X\x0a\x00\x00\x00\x10\x00\x00\x00\x7f\x3e\x00\x7f\x3e\x00" +
		"ALPH\x06\x00\x00\x00\x01\x2f\x7f\x7e\xff\x0f")
	var err error
	allocated := bytesAllocated(func() {
		_, err = Make(context.Background(), src, Spec{Width: 64})
	})
	is.Equal(CodeOf(err), CodeTooManyPixels)
	is.True(allocated < 1<<20) // refused before anything was decoded

	_, err = ReadHeader(riff("ICCP\x00\x00\x00\x00"))
	is.Equal(CodeOf(err), CodeCorruptImage) // no image chunk at all
}

// ReadHeader sniffs the format before it reads the header; the tests below are
// Sniff's, and detect's, which tells a format from the first bytes.

func TestDetect(t *testing.T) {
	for _, c := range []struct {
		src    string
		format Format
		what   string
	}{
		{"\xff\xd8\xff\xe0\x00\x10JFIF", FormatJPEG, "a JPEG image"},
		{"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", FormatPNG, "a PNG image"},
		{"\x89PNG\n\n\x1a\n\x00\x00\x00\x0dIHDR", FormatPNG, damagedPNG},
		{"GIF87a\x01\x00", FormatGIF, "a GIF image"},
		{"GIF89a\x01\x00", FormatGIF, "a GIF image"},
		{"RIFF\x10\x00\x00\x00WEBPVP8 ", FormatWebP, "a WebP image"},
		{"RIFF\x10\x00\x00\x00WAVEfmt ", "", "a RIFF file that is not WebP (audio or video)"},
		{"II*\x00\x08\x00\x00\x00", FormatTIFF, "a TIFF image"},
		{"MM\x00*\x00\x00\x00\x08", FormatTIFF, "a TIFF image"},
		{"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", FormatAVIF, "an AVIF image"},
		{"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1heichevc", FormatHEIC, "a HEIC image"},
		{"\x00\x00\x00\x20ftypa\x8ae\x99\xfe\x00\x002a\xde*\xc5mif1mil\xf1", FormatHEIC, "a HEIC image"},
		{"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", "", "an ISO media file (such as MP4 video), not an image"},
		{"BM\x36\x00\x00\x00", "", "a BMP image"},
		{"\xff\x4f\xff\x51\x00\x2f", "", "a JPEG 2000 image"},
		{"\x00\x00\x00\x0cjP  \r\n\x87\n", "", "a JPEG 2000 image"},
		{"\xff\x0a\xfa", "", "a JPEG XL image"},
		{"%PDF-1.7\n", "", "a PDF document"},
		{"\xef\xbb\xbf  <svg xmlns='http://www.w3.org/2000/svg'/>", "", "an SVG document"},
		{"<?xml version='1.0'?>\n<svg/>", "", "an SVG document"},
		{"<?xml version='1.0'?>\n<feed/>", "", "an XML document"},
		{"<!DOCTYPE html><html>", "", "an HTML document"},
		{"<?php phpinfo(); ?>", "", "a PHP script"},
		{"push graphic-context\nviewbox 0 0 640 480", "", "an ImageMagick vector script (MVG)"},
		{"hello, world\n", "", "a text file"},
		{"\x00\x01\x02\x03\xfe", "", "not an image format this build recognises"},
		{"", "", "empty"},
	} {
		format, what := detect([]byte(c.src))
		if format != c.format || what != c.what {
			t.Errorf("detect(%q) = %q, %q; want %q, %q", c.src, format, what, c.format, c.what)
		}
	}
}

func TestSniff(t *testing.T) {
	is := is.New(t)

	f, err := Sniff([]byte("GIF89a"))
	is.NoErr(err)
	is.Equal(f, FormatGIF)

	_, err = sniffFor(goEngine{}, []byte("II*\x00\x08\x00\x00\x00"))
	is.Equal(CodeOf(err), CodeUnsupportedFormat)
	is.Equal(err.Error(), "the file is a TIFF image; this build accepts JPEG, PNG, GIF and WebP")

	_, err = Sniff(nil)
	is.Equal(err.Error(), "the file is empty; this build accepts "+acceptedList(Default))

	_, err = Sniff([]byte("\x89PQG\r\n\x1a\n\x00\x00\x00\x0dIHDR"))
	is.Equal(CodeOf(err), CodeCorruptImage) // a PNG mangled in transit, not another format
}

func TestAcceptedListFollowsTheEngine(t *testing.T) {
	is := is.New(t)
	is.Equal(acceptedList(goEngine{}), "JPEG, PNG, GIF and WebP")
	is.Equal(acceptedList(acceptOnly{FormatPNG}), "PNG")
	is.Equal(acceptedList(acceptOnly{FormatTIFF, FormatJPEG}), "JPEG and TIFF")
	_, err := sniffFor(acceptOnly{FormatPNG}, []byte("\xff\xd8\xff\xe0"))
	is.True(strings.HasPrefix(err.Error(), "the file is a JPEG image; this build accepts PNG"))
}

// acceptOnly is an engine that accepts the listed formats and does nothing else.
type acceptOnly []Format

func (acceptOnly) Name() string            { return "test" }
func (acceptOnly) Version() string         { return "0" }
func (acceptOnly) Encodes(f Format) bool   { return false }
func (e acceptOnly) Accepts(f Format) bool { return slices.Contains(e, f) }
func (acceptOnly) Make(context.Context, []byte, Spec) (Result, error) {
	return Result{}, nil
}
func (acceptOnly) MakeSet(context.Context, []byte, []Output, int64) (Set, error) {
	return Set{}, nil
}
