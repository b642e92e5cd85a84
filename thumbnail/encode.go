package thumbnail

import (
	"bytes"
	"image"
	"image/draw"
	"image/jpeg"
	"image/png"

	"github.com/gen2brain/webp"
)

// flattenOnWhite composites img onto white in place: JPEG has no alpha, and white is
// what a transparent logo is usually drawn on.
func flattenOnWhite(img *image.RGBA) {
	for i := 0; i+3 < len(img.Pix); i += 4 {
		a := img.Pix[i+3]
		if a == 0xff {
			continue
		}
		// Premultiplied "over": out = src + (1 - alpha) * white.
		img.Pix[i] += 0xff - a
		img.Pix[i+1] += 0xff - a
		img.Pix[i+2] += 0xff - a
		img.Pix[i+3] = 0xff
	}
}

// encode writes img in the output format. The encoders write pixels only: nothing of
// the source's metadata (EXIF, XMP, ICC, comments) can reach the thumbnail.
func encode(img *image.RGBA, format Format, quality int) ([]byte, error) {
	var buf bytes.Buffer
	var err error
	switch format {
	case FormatJPEG:
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: quality})
	case FormatPNG:
		err = png.Encode(&buf, img)
	case FormatWebP:
		// libwebp reads straight (non-premultiplied) RGBA from the pixel buffer.
		err = webp.Encode(&buf, straightAlpha(img), webp.Options{Quality: quality, Method: webpMethod})
	default:
		return nil, newError(CodeInvalidSpec, nil, "this build cannot write %s images", format)
	}
	if err != nil {
		return nil, newError(CodeCorruptImage, err, "the thumbnail could not be encoded as %s", formatNames[format])
	}
	return buf.Bytes(), nil
}

// webpMethod is libwebp's speed/size trade-off (0 fast .. 6 small); 4 is its default.
const webpMethod = 4

// straightAlpha returns img as non-premultiplied NRGBA; an opaque image is the same
// either way and is passed through without a copy.
func straightAlpha(img *image.RGBA) image.Image {
	if img.Opaque() {
		return img
	}
	out := image.NewNRGBA(img.Rect)
	draw.Draw(out, out.Rect, img, img.Rect.Min, draw.Src)
	return out
}
