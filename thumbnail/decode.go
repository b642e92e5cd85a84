package thumbnail

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"

	xwebp "golang.org/x/image/webp"

	"github.com/thumbnailed/thumbnailed/thumbnail/internal/jpegscale"
)

// decodeShrunk is where the pure-Go engine decodes a source: once per job, whatever
// the number of outputs. It answers the pixels in the stored orientation, box-shrunk
// by the largest integer factor that leaves them at least need (shrinkMargin times
// the largest output, in each direction), so every output is scaled from one copy
// and Lanczos3 never runs over more than it must. A JPEG is decoded straight to the
// smallest of 1/2, 1/4 or 1/8 scale that still leaves need (jpegscale: the scaled
// IDCT skips most of the full-size work), and the box shrink takes what is left.
func decodeShrunk(src []byte, h Header, need image.Point) (image.Image, error) {
	decodes.Add(1)
	img, err := decodeScaled(src, h, need)
	if err != nil {
		return nil, err
	}
	b := img.Bounds()
	if k := min(b.Dx()/max(need.X, 1), b.Dy()/max(need.Y, 1), maxShrink); k > 1 {
		img = boxShrink(img, k)
	}
	return img, nil
}

// decodeScaled decodes a JPEG with jpegscale at the scale need allows, and
// anything else, or a JPEG that uses what jpegscale does not handle, with
// decode.
func decodeScaled(src []byte, h Header, need image.Point) (image.Image, error) {
	if h.Format != FormatJPEG {
		return decode(src, h)
	}
	denom := jpegscale.Denom(h.Width, h.Height, need.X, need.Y)
	img, err := jpegscale.Decode(src, denom)
	switch {
	case errors.Is(err, jpegscale.ErrUnsupported):
		return decode(src, h)
	case err != nil:
		return nil, newError(CodeCorruptImage, err, "the file is a damaged or truncated %s image", formatNames[h.Format])
	}
	want := image.Pt((h.Width+denom-1)/denom, (h.Height+denom-1)/denom)
	if b := img.Bounds(); b.Size() != want {
		// Every size decision was made on the header's word.
		return nil, newError(CodeCorruptImage, nil, "the JPEG image decodes to %dx%d pixels at 1/%d but its header says %dx%d",
			b.Dx(), b.Dy(), denom, h.Width, h.Height)
	}
	return layout(img), nil
}

// decode decodes the pixels of an image whose header was already checked. It answers
// one of three layouts the resize step reads directly: *image.YCbCr (JPEG photos),
// *image.Gray, or a premultiplied *image.RGBA (everything else, alpha kept).
func decode(src []byte, h Header) (image.Image, error) {
	format := h.Format
	var (
		img image.Image
		err error
	)
	switch format {
	case FormatJPEG:
		img, err = jpeg.Decode(bytes.NewReader(src))
		var unsupported jpeg.UnsupportedError
		if errors.As(err, &unsupported) {
			return nil, newError(CodeUnsupportedFormat, err, "the file is a JPEG image that uses a feature this build cannot decode")
		}
	case FormatPNG:
		img, err = png.Decode(bytes.NewReader(src))
	case FormatGIF:
		img, err = decodeGIF(src, h)
	case FormatWebP:
		img, err = decodeWebP(src, h)
	default:
		return nil, newError(CodeUnsupportedFormat, nil, "this build cannot decode %s images", formatNames[format])
	}
	if err != nil {
		return nil, newError(CodeCorruptImage, err, "the file is a damaged or truncated %s image", formatNames[format])
	}
	if b := img.Bounds(); b.Dx() != h.Width || b.Dy() != h.Height {
		// Never expected from the standard decoders; checked because every size
		// decision was made on the header's word.
		return nil, newError(CodeCorruptImage, nil, "the %s image decodes to %dx%d pixels but its header says %dx%d",
			formatNames[format], b.Dx(), b.Dy(), h.Width, h.Height)
	}
	return layout(img), nil
}

// layout is a decoded image in one of the layouts the resize step reads:
// *image.YCbCr or *image.Gray at the origin, else premultiplied *image.RGBA.
func layout(img image.Image) image.Image {
	switch m := img.(type) {
	case *image.YCbCr:
		if m.Rect.Min == (image.Point{}) {
			return m
		}
	case *image.Gray:
		if m.Rect.Min == (image.Point{}) {
			return m
		}
	}
	return toRGBA(img)
}

// decodeGIF decodes the first frame and places it on its canvas, as a viewer shows it
// before the animation starts; the rest of the canvas is transparent.
func decodeGIF(src []byte, h Header) (image.Image, error) {
	frame, err := gif.Decode(bytes.NewReader(src))
	if err != nil {
		return nil, err
	}
	canvas := image.NewRGBA(image.Rect(0, 0, h.Width, h.Height))
	draw.Draw(canvas, frame.Bounds(), frame, frame.Bounds().Min, draw.Src)
	return canvas, nil
}

var errWebPFrame = errors.New("webp: malformed animation frame")

// decodeWebP decodes a still WebP with golang.org/x/image/webp. That decoder cannot
// read animations, so for an animated WebP the first frame's chunks are lifted out of
// its ANMF chunk into a still WebP of their own and placed on the canvas.
func decodeWebP(src []byte, h Header) (image.Image, error) {
	still, frame, animated, err := webpFirstFrame(src)
	if err != nil {
		return nil, err
	}
	if !animated {
		return xwebp.Decode(bytes.NewReader(src))
	}
	// The frame's size was never seen by the pixel guard: it must fit the canvas,
	// which was, before a byte of it is decoded.
	if !frame.In(image.Rect(0, 0, h.Width, h.Height)) {
		return nil, errWebPFrame
	}
	img, err := xwebp.Decode(bytes.NewReader(still))
	if err != nil {
		return nil, err
	}
	canvas := image.NewRGBA(image.Rect(0, 0, h.Width, h.Height))
	draw.Draw(canvas, frame, img, img.Bounds().Min, draw.Src)
	return canvas, nil
}

// webpFirstFrame reports whether a WebP is animated and, when it is, rebuilds its
// first frame as a still WebP and returns where that frame sits on the canvas.
func webpFirstFrame(src []byte) (still []byte, frame image.Rectangle, animated bool, err error) {
	webpChunks(src, func(id string, data []byte) bool {
		switch id {
		case "VP8X":
			animated = len(data) >= 1 && data[0]&0x02 != 0
			return animated
		case "ANMF":
			if len(data) < 16 {
				return false
			}
			u24 := func(b []byte) int { return int(b[0]) | int(b[1])<<8 | int(b[2])<<16 }
			frame.Min = image.Pt(2*u24(data[0:]), 2*u24(data[3:]))
			frame.Max = frame.Min.Add(image.Pt(u24(data[6:])+1, u24(data[9:])+1))
			still = stillWebP(data[16:], frame.Dx(), frame.Dy())
			return false
		}
		return true
	})
	if animated && still == nil {
		err = errWebPFrame
	}
	return still, frame, animated, err
}

// stillWebP wraps a frame's chunks (ALPH, VP8, VP8L) in a RIFF container with a VP8X
// header of the frame's size, which is what x/image/webp checks the frame against.
func stillWebP(frameChunks []byte, width, height int) []byte {
	var flags byte
	webpChunks(append([]byte("RIFF\xff\xff\xff\xffWEBP"), frameChunks...), func(id string, _ []byte) bool {
		if id == "ALPH" {
			flags |= 0x10
		}
		return true
	})
	var out bytes.Buffer
	out.WriteString("RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00")
	out.Write([]byte{flags, 0, 0, 0})
	out.Write([]byte{byte(width - 1), byte((width - 1) >> 8), byte((width - 1) >> 16)})
	out.Write([]byte{byte(height - 1), byte((height - 1) >> 8), byte((height - 1) >> 16)})
	out.Write(frameChunks)
	b := out.Bytes()
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)-8))
	return b
}
