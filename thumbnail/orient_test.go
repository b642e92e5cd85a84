package thumbnail

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"regexp"
	"strconv"
	"testing"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/thumbnail/internal/testcorpus"
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
	return moved(m, image.Rect(0, 0, h, w), func(x, y int) image.Point { return image.Pt(h-1-y, x) })
}

func mirror(m *image.RGBA) *image.RGBA {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	return moved(m, image.Rect(0, 0, w, h), func(x, y int) image.Point { return image.Pt(w-1-x, y) })
}

// moved is an image of bounds r holding each pixel (x, y) of m at to(x, y).
func moved(m *image.RGBA, r image.Rectangle, to func(x, y int) image.Point) *image.RGBA {
	out := image.NewRGBA(r)
	for y := range m.Rect.Dy() {
		for x := range m.Rect.Dx() {
			p := to(x, y)
			out.Set(p.X, p.Y, m.At(x, y))
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

// Each exif-orientation set holds one picture stored in every EXIF orientation, with
// the tag saying how to turn it upright. Every thumbnail of a set must match the
// set's upright one; and, to show the comparison has teeth, must not match that
// reference turned upside down.
func TestEXIFOrientationComesOutUpright(t *testing.T) {
	thumb := func(t *testing.T, file string) *image.RGBA {
		spec := Spec{Width: 64, Height: 64, Format: FormatPNG}
		res, err := Make(context.Background(), readTestdata(t, file), spec)
		is.New(t).NoErr(err)
		checkOutput(t, res, spec)
		img, err := png.Decode(bytes.NewReader(res.Data))
		is.New(t).NoErr(err)
		return toRGBA(img)
	}
	for set, files := range orientationSets(t) {
		ref := thumb(t, referenceFile(files))
		for n, file := range files {
			t.Run(file, func(t *testing.T) {
				checkUpright(t, fmt.Sprintf("%s orientation %d", set, n), thumb(t, file), ref)
			})
		}
	}
}

// orientationSets maps each exif-orientation set of the corpus to its files by
// orientation.
func orientationSets(t *testing.T) map[string]map[int]string {
	sets := map[string]map[int]string{} // set name -> orientation -> file
	name := regexp.MustCompile(`^exif-orientation/(.+)_(\d)\.(jpg|webp)$`)
	for _, row := range testcorpus.Read(t, "testdata") {
		m := name.FindStringSubmatch(row.File)
		if row.Category != "exif-orientation" || m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		if sets[m[1]] == nil {
			sets[m[1]] = map[int]string{}
		}
		sets[m[1]][n] = row.File
	}
	is.New(t).Equal(len(sets), 3)
	return sets
}

// referenceFile is a set's upright file. The pillow WebP set has no orientation-1
// file: its orientation-2 file is the reference, anchored by the JPEG sets (one
// orient function serves both).
func referenceFile(files map[int]string) string {
	if files[1] == "" {
		return files[2]
	}
	return files[1]
}

// checkUpright checks that a thumbnail matches the upright reference made the same
// way, and that every other turn of the reference with the same shape is much
// further away: a wrong orientation would not pass.
func checkUpright(t *testing.T, what string, got, ref *image.RGBA) {
	t.Helper()
	// Mean absolute differences, 0..255. The jmatsu set is a flat green card with
	// small labels, so a wrong turn changes only a few per cent of its pixels (3.3
	// for a mirror image with libvips's softer resampling).
	const (
		sameBelow      = 2.5 // two renderings of one picture
		differentAbove = 3.0 // the picture against a wrong turn of it
	)
	is := is.New(t)
	is.Equal(got.Rect, ref.Rect) // upright shape
	upright := meanAbsDiff(got, ref)
	is.True(upright < sameBelow) // matches the upright picture
	for turn := 2; turn <= 8; turn++ {
		wrong := orient(ref, turn)
		if wrong.Rect != got.Rect {
			continue
		}
		diff := meanAbsDiff(got, wrong)
		t.Logf("%s: %.1f against upright, %.1f against turn %d", what, upright, diff, turn)
		is.True(diff > differentAbove)
		is.True(diff > 3*upright)
	}
}

// meanAbsDiff is the mean absolute difference of the colour channels, 0..255.
func meanAbsDiff(a, b *image.RGBA) float64 {
	if a.Rect != b.Rect {
		return 255
	}
	var sum, n int
	for i := range a.Pix {
		if i%4 == 3 {
			continue
		}
		d := int(a.Pix[i]) - int(b.Pix[i])
		sum += max(d, -d)
		n++
	}
	return float64(sum) / float64(n)
}
