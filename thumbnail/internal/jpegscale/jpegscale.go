// Package jpegscale decodes baseline and progressive JPEG images at 1/1, 1/2,
// 1/4 or 1/8 of their size, the way libjpeg's scaled decoding does: the
// entropy-coded data is decoded in full, but each 8x8 block of coefficients
// goes through a reduced inverse DCT that produces 4x4, 2x2 or 1x1 pixels
// (the exact average of the block's 2x2, 4x4 or 8x8 full-size pixels, before
// rounding and clamping). The full-size image is never built, so a thumbnail
// costs a fraction of a full decode in time and memory.
//
// The marker parsing, progressive decoding and colour-model rules are derived
// from the Go standard library's image/jpeg (see NOTICE), and the results have
// the same types: *image.YCbCr (keeping the file's chroma subsampling),
// *image.Gray, *image.CMYK (Adobe CMYK and YCCK) or *image.RGBA (Adobe RGB and
// 'R','G','B' component identifiers). At denom 1 the pixels are identical to
// image/jpeg's.
//
// Anything the decoder does not handle is reported with an error wrapping
// ErrUnsupported; the caller should then decode with image/jpeg, which either
// decodes the file or refuses it.
package jpegscale

import (
	"errors"
	"fmt"
	"image"
	"io"
)

// ErrUnsupported is wrapped by the errors of Decode for inputs it does not
// handle but image/jpeg might: arithmetic coding, 12-bit precision, lossless
// and hierarchical processes, the sampling factors and numbers of components
// that image/jpeg refuses too, a 4-component JPEG without an Adobe marker,
// over-subscribed Huffman tables, coefficients beyond 16 bits, an image whose
// scans leave coefficients undecoded (a progressive JPEG cut short after a
// scan, which image/jpeg shows partially), or a damaged stream in a layout
// that image/jpeg reads differently. The caller should decode such a file with
// image/jpeg instead, which either decodes it or refuses it.
var ErrUnsupported = errors.New("jpegscale: unsupported JPEG (use image/jpeg)")

// maxPixels bounds width*height of the images Decode accepts, whatever the
// scale, so that a hostile header cannot make it allocate without limit. The
// caller is expected to apply a (smaller) limit of its own before decoding.
const maxPixels = 1 << 27

// Decode decodes a JPEG at 1/denom scale, denom one of 1, 2, 4, 8. The result
// is ceil(w/denom) x ceil(h/denom) (as libjpeg does) and is an *image.YCbCr
// (4:4:4, 4:2:2, 4:2:0, 4:4:0, 4:1:1 or 4:1:0, as in the file; the chroma
// planes are scaled by 1/denom too), *image.Gray, *image.CMYK (Adobe CMYK or
// YCCK, converted the way image/jpeg does) or *image.RGBA (RGB JPEGs), like
// image/jpeg's own result types. Truncated data is an error wrapping
// io.ErrUnexpectedEOF, as with image/jpeg; errors wrapping ErrUnsupported mean
// "use image/jpeg instead". Images over 2^27 pixels (134 MP) are refused with
// an error that does not wrap ErrUnsupported.
//
// The memory used is that of the result, plus, for a progressive JPEG, what
// its scans accumulate: 10 bytes per 8x8 block at 1/8 scale, 58 at 1/4, 106
// at 1/2 and 136 at full size.
func Decode(src []byte, denom int) (image.Image, error) {
	var shift uint
	switch denom {
	case 1:
		shift = 0
	case 2:
		shift = 1
	case 4:
		shift = 2
	case 8:
		shift = 3
	default:
		return nil, fmt.Errorf("jpegscale: scale 1/%d: %w", denom, ErrUnsupported)
	}
	d := &decoder{src: src, shift: shift}
	return d.decode()
}

// Denom picks the largest denom in {8, 4, 2, 1} whose scaled size
// ceil(w/denom) x ceil(h/denom) is still at least minW x minH (pass twice the
// target size, so that the final resampling still has detail to work with).
func Denom(w, h, minW, minH int) int {
	for _, denom := range [...]int{8, 4, 2} {
		if ceilDiv(w, denom) >= minW && ceilDiv(h, denom) >= minH {
			return denom
		}
	}
	return 1
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// formatError reports that the input is not a valid JPEG.
type formatError string

func (e formatError) Error() string { return "jpegscale: invalid JPEG format: " + string(e) }

// unsupportedError reports a valid but unimplemented JPEG feature; it wraps
// ErrUnsupported.
type unsupportedError string

func (e unsupportedError) Error() string {
	return "jpegscale: unsupported JPEG feature: " + string(e)
}

func (e unsupportedError) Unwrap() error { return ErrUnsupported }

// errShortData is returned when the input ends before the image does.
var errShortData = fmt.Errorf("jpegscale: truncated JPEG: %w", io.ErrUnexpectedEOF)
