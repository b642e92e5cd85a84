package thumbnail

import (
	"image"
	"testing"

	"github.com/matryer/is"
)

func TestPlanGeometry(t *testing.T) {
	r := func(x0, y0, x1, y1 int) image.Rectangle { return image.Rect(x0, y0, x1, y1) }
	for _, c := range []struct {
		name      string
		src       image.Point
		spec      Spec
		scale     image.Point
		crop      image.Rectangle
		errorCode string
	}{
		{"contain landscape", image.Pt(4000, 3000), Spec{Width: 256, Height: 256}, image.Pt(256, 192), r(0, 0, 256, 192), ""},
		{"contain portrait", image.Pt(3000, 4000), Spec{Width: 256, Height: 256}, image.Pt(192, 256), r(0, 0, 192, 256), ""},
		{"contain rounds", image.Pt(2560, 3837), Spec{Width: 256, Height: 256}, image.Pt(171, 256), r(0, 0, 171, 256), ""},
		{"contain never upscales", image.Pt(100, 50), Spec{Width: 400, Height: 400}, image.Pt(100, 50), r(0, 0, 100, 50), ""},
		{"contain enlarges when asked", image.Pt(100, 50), Spec{Width: 400, Height: 400, Enlarge: true}, image.Pt(400, 200), r(0, 0, 400, 200), ""},
		{"contain same aspect", image.Pt(800, 400), Spec{Width: 200, Height: 100}, image.Pt(200, 100), r(0, 0, 200, 100), ""},
		{"width only", image.Pt(4000, 3000), Spec{Width: 100}, image.Pt(100, 75), r(0, 0, 100, 75), ""},
		{"height only", image.Pt(4000, 3000), Spec{Height: 100}, image.Pt(133, 100), r(0, 0, 133, 100), ""},
		{"width only, never below 1", image.Pt(10000, 10), Spec{Width: 100}, image.Pt(100, 1), r(0, 0, 100, 1), ""},
		{"width only of a small source", image.Pt(50, 20), Spec{Width: 100}, image.Pt(50, 20), r(0, 0, 50, 20), ""},
		{"width only, enlarged", image.Pt(50, 20), Spec{Width: 100, Enlarge: true}, image.Pt(100, 40), r(0, 0, 100, 40), ""},
		{"cover crops the sides", image.Pt(400, 200), Spec{Width: 100, Height: 100, Fit: FitCover}, image.Pt(200, 100), r(50, 0, 150, 100), ""},
		{"cover crops top and bottom", image.Pt(200, 400), Spec{Width: 100, Height: 100, Fit: FitCover}, image.Pt(100, 200), r(0, 50, 100, 150), ""},
		{"cover enlarges a small source", image.Pt(50, 40), Spec{Width: 100, Height: 100, Fit: FitCover}, image.Pt(125, 100), r(12, 0, 112, 100), ""},
		{"cover with width only", image.Pt(50, 40), Spec{Width: 100, Fit: FitCover}, image.Pt(100, 80), r(0, 0, 100, 80), ""},
		{"fill stretches", image.Pt(400, 200), Spec{Width: 100, Height: 100, Fit: FitFill}, image.Pt(100, 100), r(0, 0, 100, 100), ""},
		{"fill enlarges", image.Pt(10, 10), Spec{Width: 30, Height: 20, Fit: FitFill}, image.Pt(30, 20), r(0, 0, 30, 20), ""},
		{"fill with height only", image.Pt(10, 20), Spec{Height: 40, Fit: FitFill}, image.Pt(20, 40), r(0, 0, 20, 40), ""},
		{"1x1 source", image.Pt(1, 1), Spec{Width: 256, Height: 256}, image.Pt(1, 1), r(0, 0, 1, 1), ""},
		{"a side past the largest output", image.Pt(1, 10000), Spec{Width: 100, Fit: FitFill}, image.Point{}, image.Rectangle{}, CodeInvalidSpec},
		{"an intermediate past the pixel limit", image.Pt(1, 16000), Spec{Width: 16000, Height: 1, Fit: FitCover}, image.Point{}, image.Rectangle{}, CodeTooManyPixels},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			g, err := planGeometry(c.src.X, c.src.Y, c.spec.withDefaults())
			is.Equal(CodeOf(err), c.errorCode)
			is.Equal(g.Scale, c.scale)
			is.Equal(g.Crop, c.crop)
		})
	}
}

func TestPlanGeometryCoverAndFillAlwaysAnswerTheBox(t *testing.T) {
	is := is.New(t)
	for _, src := range []image.Point{{1, 1}, {7, 3}, {3, 7}, {4000, 3000}, {10, 4000}, {333, 333}} {
		for _, box := range []image.Point{{1, 1}, {256, 256}, {300, 100}, {17, 1000}} {
			for _, fit := range []Fit{FitCover, FitFill} {
				g, err := planGeometry(src.X, src.Y, Spec{Width: box.X, Height: box.Y, Fit: fit}.withDefaults())
				is.NoErr(err)
				is.Equal(g.Crop.Size(), box)                      // exactly the box
				is.True(g.Crop.In(image.Rectangle{Max: g.Scale})) // cut from the scaled image
			}
		}
	}
}
