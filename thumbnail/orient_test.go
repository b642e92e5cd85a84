package thumbnail

import (
	"image"
	"testing"

	"github.com/matryer/is"
)

// numbered is a w x h image whose every pixel is distinct: red = x, green = y.
func numbered(w, h int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			i := m.PixOffset(x, y)
			m.Pix[i], m.Pix[i+1], m.Pix[i+3] = uint8(x), uint8(y), 0xff
		}
	}
	return m
}

// The EXIF orientations written as the two plain moves of a picture in the hand,
// independently of orient's formulas.
func rotateCW(m *image.RGBA) *image.RGBA {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	out := image.NewRGBA(image.Rect(0, 0, h, w))
	for y := range h {
		for x := range w {
			out.Set(h-1-y, x, m.At(x, y))
		}
	}
	return out
}

func mirror(m *image.RGBA) *image.RGBA {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			out.Set(w-1-x, y, m.At(x, y))
		}
	}
	return out
}

func TestOrientMatchesTheEXIFDefinitions(t *testing.T) {
	is := is.New(t)
	src := numbered(3, 2)
	rot180 := func(m *image.RGBA) *image.RGBA { return rotateCW(rotateCW(m)) }
	want := map[int]*image.RGBA{
		1: src,
		2: mirror(src),                   // mirror horizontal
		3: rot180(src),                   // rotate 180
		4: mirror(rot180(src)),           // mirror vertical
		5: mirror(rotateCW(src)),         // transpose: mirror horizontal + rotate 270 CW
		6: rotateCW(src),                 // rotate 90 CW
		7: mirror(rotateCW(rot180(src))), // transverse: mirror horizontal + rotate 90 CW
		8: rotateCW(rot180(src)),         // rotate 270 CW
	}
	for orientation, w := range want {
		got := orient(src, orientation)
		is.Equal(got.Rect, w.Rect)
		is.Equal(got.Pix, w.Pix) // orientation
		is.Equal(transposes(orientation), got.Rect.Dx() == 2)
	}
	is.Equal(orient(src, 0), src) // no tag value to act on
	is.Equal(orient(src, 9), src)
}

func TestCrop(t *testing.T) {
	is := is.New(t)
	src := numbered(10, 6)
	got := crop(src, image.Rect(2, 1, 5, 3))
	is.Equal(got.Rect, image.Rect(0, 0, 3, 2))
	is.Equal(got.RGBAAt(0, 0).R, uint8(2))
	is.Equal(got.RGBAAt(2, 1).G, uint8(2))
	is.Equal(crop(src, src.Rect), src) // the whole image is not copied
}
