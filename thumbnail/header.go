package thumbnail

import (
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	"image/png"

	xwebp "golang.org/x/image/webp"
)

// Header is what the file says about itself, read without decoding any pixels.
type Header struct {
	Format        Format
	Width, Height int
}

// headerReaders read the dimensions of each format from its header. An engine that
// accepts another format adds its reader here; ReadHeader refuses a format it has no
// reader for, so no engine ever decodes an image whose size was not checked.
var headerReaders = map[Format]func(src []byte) (Header, error){
	FormatJPEG: readJPEGHeader,
	FormatPNG:  readPNGHeader,
	FormatGIF:  readGIFHeader,
	FormatWebP: readWebPHeader,
}

// ReadHeader sniffs the format and reads the image's dimensions from its header, for
// the default engine. It refuses a GIF whose first frame does not fit its canvas
// (a frame larger than its canvas is the classic GIF decompression bomb).
func ReadHeader(src []byte) (Header, error) {
	return readHeaderFor(Default, src)
}

func readHeaderFor(e Engine, src []byte) (Header, error) {
	format, err := sniffFor(e, src)
	if err != nil {
		return Header{}, err
	}
	read, ok := headerReaders[format]
	if !ok {
		return Header{}, newError(CodeUnsupportedFormat, nil, "this build cannot read the size of a %s image", formatNames[format])
	}
	h, err := read(src)
	if err != nil {
		return Header{}, err
	}
	if h.Width <= 0 || h.Height <= 0 {
		return Header{}, newError(CodeCorruptImage, nil, "the %s image declares a size of %dx%d pixels", formatNames[format], h.Width, h.Height)
	}
	return h, nil
}

// CheckPixels refuses an image with more pixels than maxPixels (0 means the default),
// before anything is decoded: the check that stops a decompression bomb.
func (h Header) CheckPixels(maxPixels int64) error {
	if maxPixels <= 0 {
		maxPixels = DefaultMaxPixels
	}
	pixels := int64(h.Width) * int64(h.Height)
	if pixels > maxPixels {
		return newError(CodeTooManyPixels, nil, "the image is %dx%d pixels (%d); the limit is %d pixels", h.Width, h.Height, pixels, maxPixels)
	}
	return nil
}

func readJPEGHeader(src []byte) (Header, error) {
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(src))
	if err != nil {
		if process := jpegProcess(src); process != "" {
			return Header{}, newError(CodeUnsupportedFormat, err, "the file is a JPEG image with %s coding; this build decodes baseline and progressive JPEG only", process)
		}
		var unsupported jpeg.UnsupportedError
		if errors.As(err, &unsupported) {
			return Header{}, newError(CodeUnsupportedFormat, err, "the file is a JPEG image that uses a feature this build cannot decode")
		}
		return Header{}, newError(CodeCorruptImage, err, "the file is a damaged JPEG image")
	}
	return Header{Format: FormatJPEG, Width: cfg.Width, Height: cfg.Height}, nil
}

// jpegProcess names the coding process of a JPEG the standard decoder cannot read
// ("lossless", "arithmetic", "hierarchical"), or "" for baseline, progressive
// or a file whose frame header cannot be found.
func jpegProcess(src []byte) string {
	process := ""
	jpegSegments(src, func(marker byte, _ []byte) bool {
		switch marker {
		case 0xc0, 0xc1, 0xc2:
			return false
		case 0xc3, 0xc7, 0xcb, 0xcf:
			process = "lossless"
		case 0xc9, 0xca:
			process = "arithmetic"
		case 0xc5, 0xc6, 0xcd, 0xce, 0xde:
			process = "hierarchical"
		default:
			return true
		}
		return false
	})
	return process
}

func readPNGHeader(src []byte) (Header, error) {
	cfg, err := png.DecodeConfig(bytes.NewReader(src))
	if err != nil {
		return Header{}, newError(CodeCorruptImage, err, "the file is a damaged PNG image")
	}
	return Header{Format: FormatPNG, Width: cfg.Width, Height: cfg.Height}, nil
}

func readWebPHeader(src []byte) (Header, error) {
	cfg, err := xwebp.DecodeConfig(bytes.NewReader(src))
	if err != nil {
		return Header{}, newError(CodeCorruptImage, err, "the file is a damaged WebP image")
	}
	return Header{Format: FormatWebP, Width: cfg.Width, Height: cfg.Height}, nil
}

// readGIFHeader reads the logical screen (the canvas) and the first image descriptor.
// The standard library's DecodeConfig stops at the logical screen, but the decoder
// allocates the frame, which a hostile file declares far larger than its canvas.
func readGIFHeader(src []byte) (Header, error) {
	canvas, frame, err := gifFirstFrame(src)
	if err != nil {
		return Header{}, newError(CodeCorruptImage, err, "the file is a damaged GIF image")
	}
	h := Header{Format: FormatGIF, Width: canvas.Dx(), Height: canvas.Dy()}
	// The frame's corner is never negative (the fields are unsigned), so only its far
	// edges can leave the canvas; the standard decoder refuses the same frames.
	if frame.Max.X <= canvas.Max.X && frame.Max.Y <= canvas.Max.Y {
		return h, nil
	}
	if frame.Dx()*frame.Dy() > canvas.Dx()*canvas.Dy() {
		return Header{}, newError(CodeTooManyPixels, nil, "the GIF's first frame is %dx%d pixels, larger than its %dx%d canvas",
			frame.Dx(), frame.Dy(), canvas.Dx(), canvas.Dy())
	}
	return Header{}, newError(CodeCorruptImage, nil, "the GIF's first frame (%dx%d at %d,%d) lies outside its %dx%d canvas",
		frame.Dx(), frame.Dy(), frame.Min.X, frame.Min.Y, canvas.Dx(), canvas.Dy())
}

var errGIFNoFrame = errors.New("gif: no image descriptor")

// gifFirstFrame walks a GIF's blocks up to the first image descriptor, bounds-checked.
func gifFirstFrame(src []byte) (canvas, frame image.Rectangle, err error) {
	le16 := func(p int) int { return int(src[p]) | int(src[p+1])<<8 }
	if len(src) < 13 {
		return canvas, frame, errGIFNoFrame
	}
	canvas = image.Rect(0, 0, le16(6), le16(8))
	p := 13
	if flags := src[10]; flags&0x80 != 0 {
		p += 3 << (flags&7 + 1) // global colour table
	}
	for p < len(src) {
		switch src[p] {
		case 0x21: // extension: introducer, label, then data sub-blocks up to a 0 length
			p += 2
			for p < len(src) && src[p] != 0 {
				p += 1 + int(src[p])
			}
			p++
		case 0x2c: // image descriptor
			if p+10 > len(src) {
				return canvas, frame, errGIFNoFrame
			}
			left, top := le16(p+1), le16(p+3)
			frame = image.Rect(left, top, left+le16(p+5), top+le16(p+7))
			return canvas, frame, nil
		default: // trailer (0x3b) or garbage
			return canvas, frame, errGIFNoFrame
		}
	}
	return canvas, frame, errGIFNoFrame
}
