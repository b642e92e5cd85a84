package thumbnail

import (
	"image"
	"image/color"
	"testing"

	"github.com/matryer/is"
)

func TestFlattenOnWhite(t *testing.T) {
	is := is.New(t)
	m := image.NewRGBA(image.Rect(0, 0, 3, 1))
	m.SetRGBA(0, 0, color.RGBA{0, 0, 0, 0})      // transparent
	m.SetRGBA(1, 0, color.RGBA{128, 0, 0, 128})  // half-transparent red
	m.SetRGBA(2, 0, color.RGBA{10, 20, 30, 255}) // opaque
	flattenOnWhite(m)
	is.Equal(m.Pix, []uint8{255, 255, 255, 255, 255, 127, 127, 255, 10, 20, 30, 255})
}

func TestEncodeWritesEachFormat(t *testing.T) {
	img := numbered(40, 30)
	img.SetRGBA(0, 0, color.RGBA{}) // one transparent pixel
	for _, format := range []Format{FormatJPEG, FormatPNG, FormatWebP} {
		t.Run(string(format), func(t *testing.T) {
			is := is.New(t)
			out, err := encode(img, format, 80)
			is.NoErr(err)
			got, err := Sniff(out)
			is.NoErr(err)
			is.Equal(got, format)
			h, err := ReadHeader(out)
			is.NoErr(err)
			is.Equal([2]int{h.Width, h.Height}, [2]int{40, 30})
		})
	}
	_, err := encode(img, FormatGIF, 80)
	is.New(t).Equal(CodeOf(err), CodeInvalidSpec)
}

func TestStraightAlpha(t *testing.T) {
	is := is.New(t)
	m := image.NewRGBA(image.Rect(0, 0, 1, 1))
	m.SetRGBA(0, 0, color.RGBA{64, 0, 0, 128})
	is.Equal(straightAlpha(m).(*image.NRGBA).Pix, []uint8{127, 0, 0, 128})
	opaque := numbered(2, 2)
	is.Equal(straightAlpha(opaque), image.Image(opaque)) // no copy when nothing is transparent
}
