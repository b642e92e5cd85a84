package thumbnail

import (
	"bytes"
	"context"
	"encoding/binary"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"testing"

	"github.com/matryer/is"
)

var grey = color.RGBA{128, 128, 128, 255}

// withObject is a w x h flat grey picture with one small colourful object: a
// checkerboard of 10 px cells in saturated colours (so it keeps its colours when
// scaled down) filling r.
func withObject(w, h int, r image.Rectangle) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	fill(m, m.Rect, grey)
	palette := []color.RGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 0, 255},
		{255, 0, 255, 255}, {0, 255, 255, 255}, {255, 255, 255, 255}, {0, 0, 0, 255}}
	random := rand.New(rand.NewPCG(3, 4))
	for y := r.Min.Y; y < r.Max.Y; y += 10 {
		for x := r.Min.X; x < r.Max.X; x += 10 {
			fill(m, image.Rect(x, y, x+10, y+10).Intersect(r), palette[random.IntN(len(palette))])
		}
	}
	return m
}

func fill(m *image.RGBA, r image.Rectangle, c color.RGBA) {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			m.SetRGBA(x, y, c)
		}
	}
}

func encodePNG(t *testing.T, m image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	is.New(t).NoErr(png.Encode(&buf, m))
	return buf.Bytes()
}

// objectPixels counts the pixels of a PNG output that are not the grey background.
func objectPixels(t *testing.T, data []byte) int {
	img := decodePNG(t, data)
	n := 0
	for i := 0; i < len(img.Pix); i += 4 {
		d := 0
		for c := range 3 {
			d += max(int(img.Pix[i+c])-128, 128-int(img.Pix[i+c]))
		}
		if d > 60 {
			n++
		}
	}
	return n
}

// A 60 px object in each corner and in the middle of each edge of a 1200x800 grey
// picture: cover crops with attention and entropy keep all of it, in both
// directions of crop; the centre crop loses it when it sits in a corner.
func TestSmartGravityKeepsTheObject(t *testing.T) {
	const w, h, side, inset = 1200, 800, 60, 20
	places := map[string]image.Point{
		"top left": {inset, inset}, "top": {(w - side) / 2, inset}, "top right": {w - side - inset, inset},
		"left": {inset, (h - side) / 2}, "right": {w - side - inset, (h - side) / 2},
		"bottom left": {inset, h - side - inset}, "bottom": {(w - side) / 2, h - side - inset}, "bottom right": {w - side - inset, h - side - inset},
	}
	corners := map[string]bool{"top left": true, "top right": true, "bottom left": true, "bottom right": true}
	for place, at := range places {
		src := encodePNG(t, withObject(w, h, image.Rectangle{Min: at, Max: at.Add(image.Pt(side, side))}))
		for _, box := range []image.Point{{200, 400}, {400, 200}} {
			// The object's area in the output: cover scales the height to 400 for the
			// tall box (1/2) and the width to 400 for the wide one (1/3).
			scaled := side * box.X / w
			if box.X == 200 {
				scaled = side * box.Y / h
			}
			area := scaled * scaled
			outputs := []Output{
				{Name: "attention", Width: box.X, Height: box.Y, Fit: FitCover, Gravity: GravityAttention, Format: FormatPNG},
				{Name: "entropy", Width: box.X, Height: box.Y, Fit: FitCover, Gravity: GravityEntropy, Format: FormatPNG},
				{Name: "center", Width: box.X, Height: box.Y, Fit: FitCover, Format: FormatPNG},
			}
			set, err := MakeSet(context.Background(), src, outputs, 0)
			is.New(t).NoErr(err)
			for i, o := range outputs {
				got := objectPixels(t, set.Outputs[i].Data)
				t.Logf("%s, %dx%d, %s: %d of %d object pixels", place, box.X, box.Y, o.Name, got, area)
				switch {
				case o.Gravity != "" && got < area*8/10:
					t.Errorf("%s, %dx%d: the %s crop keeps %d of the object's %d pixels", place, box.X, box.Y, o.Name, got, area)
				case o.Gravity == "" && corners[place] && got > area/10:
					t.Errorf("%s, %dx%d: the centre crop keeps %d of the object's %d pixels", place, box.X, box.Y, got, area)
				}
			}
		}
	}
}

// A picture with nothing to choose between (deviation under flatDeviation) keeps the
// centre crop with every gravity, without error. This one is a faint ramp (126 to
// 130), so that a crop anywhere else would show: the focal crop at the edge differs.
func TestSmartGravityOfAFlatPictureIsTheCentre(t *testing.T) {
	for _, dir := range []string{"across", "down"} {
		t.Run(dir, func(t *testing.T) {
			is := is.New(t)
			m := image.NewRGBA(image.Rect(0, 0, 1200, 800))
			for y := range 800 {
				for x := range 1200 {
					v := uint8(126 + 5*x/1200)
					if dir == "down" {
						v = uint8(126 + 5*y/800)
					}
					m.SetRGBA(x, y, color.RGBA{v, v, v, 255})
				}
			}
			box := image.Pt(200, 400) // slides across
			if dir == "down" {
				box = image.Pt(400, 200)
			}
			cover := func(g Gravity, focal *Point) Output {
				return Output{Name: string(g), Width: box.X, Height: box.Y, Fit: FitCover, Gravity: g, Focal: focal, Format: FormatPNG}
			}
			set, err := MakeSet(context.Background(), encodePNG(t, m), []Output{
				cover(GravityCenter, nil), cover(GravityAttention, nil), cover(GravityEntropy, nil), cover(GravityFocal, &Point{0, 0}),
			}, 0)
			is.NoErr(err)
			centre := set.Outputs[0].Data
			is.True(bytes.Equal(set.Outputs[1].Data, centre))  // attention: the centre crop
			is.True(bytes.Equal(set.Outputs[2].Data, centre))  // entropy: the centre crop
			is.True(!bytes.Equal(set.Outputs[3].Data, centre)) // a crop at the edge is not
		})
	}
	_, err := MakeSet(context.Background(), encodePNG(t, withObject(300, 200, image.Rectangle{})), []Output{
		{Width: 50, Height: 100, Fit: FitCover, Gravity: GravityAttention}, {Width: 100, Height: 50, Fit: FitCover, Gravity: GravityEntropy},
	}, 0)
	is.New(t).NoErr(err) // a perfectly flat picture
}

// marker finds the centre of the red marker in an output.
func marker(t *testing.T, data []byte, format Format) (x, y float64) {
	t.Helper()
	var img *image.RGBA
	if format == FormatPNG {
		img = decodePNG(t, data)
	} else {
		m, err := jpeg.Decode(bytes.NewReader(data))
		is.New(t).NoErr(err)
		img = toRGBA(m)
	}
	var n float64
	for py := range img.Rect.Dy() {
		for px := range img.Rect.Dx() {
			c := img.RGBAAt(px, py)
			if int(c.R)-int(c.G) > 64 && int(c.R)-int(c.B) > 64 {
				x, y, n = x+float64(px)+0.5, y+float64(py)+0.5, n+1
			}
		}
	}
	is.New(t).True(n > 0) // the marker is in the output
	return x / n, y / n
}

// withEXIFOrientation is a JPEG of an upright picture stored turned, with the EXIF
// orientation that turns it back.
func withEXIFOrientation(t *testing.T, upright *image.RGBA, orientation int) []byte {
	// 6 and 8 undo each other: to be shown with 6, the picture is stored turned by 8.
	stored := orient(upright, map[int]int{1: 1, 6: 8, 8: 6}[orientation])
	var buf bytes.Buffer
	is.New(t).NoErr(jpeg.Encode(&buf, stored, &jpeg.Options{Quality: 95}))
	exif := append([]byte("Exif\x00\x00"), tiffWith(binary.BigEndian, 3, uint32(orientation))...)
	app1 := append([]byte{0xff, 0xe1, byte((len(exif) + 2) >> 8), byte(len(exif) + 2)}, exif...)
	return append(append([]byte{0xff, 0xd8}, app1...), buf.Bytes()[2:]...)
}

// focal keeps its point in the middle of the crop, as near as the box allows; the
// point is in the upright picture, whatever the EXIF orientation.
func TestFocalGravityCentresOnThePoint(t *testing.T) {
	const w, h = 1200, 800
	for _, orientation := range []int{1, 6, 8} {
		for _, c := range []struct {
			point Point
			box   image.Point
			want  [2]float64 // where the point lands in the output
		}{
			// 200x400: the scaled picture is 600x400 and the crop slides across.
			{Point{0.5, 0.5}, image.Pt(200, 400), [2]float64{100, 200}},
			{Point{0.3, 0.7}, image.Pt(200, 400), [2]float64{100, 280}},
			{Point{0.05, 0.5}, image.Pt(200, 400), [2]float64{30, 200}},  // as near the left edge as it goes
			{Point{0.95, 0.2}, image.Pt(200, 400), [2]float64{170, 80}},  // the right edge
			{Point{0.6, 0.45}, image.Pt(400, 200), [2]float64{240, 100}}, // 400x267, sliding down
			{Point{0.5, 0.1}, image.Pt(400, 200), [2]float64{200, 26.7}}, // the top edge
			{Point{0.5, 0.98}, image.Pt(400, 200), [2]float64{200, 194.7}},
		} {
			is := is.New(t)
			upright := withObject(w, h, image.Rectangle{})
			centre := image.Pt(int(c.point.X*w), int(c.point.Y*h))
			fill(upright, image.Rectangle{Min: centre.Sub(image.Pt(12, 12)), Max: centre.Add(image.Pt(12, 12))}.Intersect(upright.Rect), color.RGBA{255, 0, 0, 255})
			format, src := FormatPNG, encodePNG(t, upright)
			if orientation != 1 {
				format, src = FormatJPEG, withEXIFOrientation(t, upright, orientation)
			}
			point := c.point
			set, err := MakeSet(context.Background(), src, []Output{
				{Width: c.box.X, Height: c.box.Y, Fit: FitCover, Focal: &point, Format: format}, // gravity focal by default
			}, 0)
			is.NoErr(err)
			x, y := marker(t, set.Outputs[0].Data, format)
			want := c.want
			t.Logf("orientation %d, %v in %v: marker at (%.1f, %.1f), want (%.1f, %.1f)", orientation, c.point, c.box, x, y, want[0], want[1])
			if d := max(abs(x-want[0]), abs(y-want[1])); d > 1.5 {
				t.Errorf("orientation %d, focal %v, %v: the point is at (%.1f, %.1f), not (%.1f, %.1f)", orientation, c.point, c.box, x, y, want[0], want[1])
			}
		}
	}
}

func abs(f float64) float64 { return max(f, -f) }

func TestBestWindow(t *testing.T) {
	is := is.New(t)
	is.Equal(bestWindow([]float64{0, 0, 0, 0, 0}), 2)                // nothing to prefer: the middle
	is.Equal(bestWindow([]float64{5, 5, 5, 1, 0, 0}), 1)             // held whole from 0 to 2: centred on it
	is.Equal(bestWindow([]float64{9, 5, 1, 0}), 0)                   // at the edge: as near as it goes
	is.Equal(bestWindow([]float64{0, 1, 2, 8, 1, 8.05, 8.05, 8}), 6) // the run around the best, not another near-best
	is.Equal(bestWindow([]float64{3}), 0)
}

func TestFocalCrop(t *testing.T) {
	is := is.New(t)
	g := geometry{Scale: image.Pt(600, 400), Crop: image.Rect(200, 0, 400, 400)}
	is.Equal(focalCrop(g, Point{0.5, 0.5}), image.Rect(200, 0, 400, 400))
	is.Equal(focalCrop(g, Point{0.25, 0}), image.Rect(50, 0, 250, 400))
	is.Equal(focalCrop(g, Point{0, 1}), image.Rect(0, 0, 200, 400))
	is.Equal(focalCrop(g, Point{1, 0}), image.Rect(400, 0, 600, 400))
}
