package thumbnail

import (
	"context"
	"image"
	"testing"

	"github.com/matryer/is"
)

func TestReadHeaderAgreesWithTheManifest(t *testing.T) {
	for _, row := range readManifest(t) {
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
