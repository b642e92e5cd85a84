package thumbnail

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/matryer/is"
)

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
