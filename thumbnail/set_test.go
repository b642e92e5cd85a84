package thumbnail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/thumbnail/internal/testcorpus"
)

// wantSize is the size the fit rules of the design give an output of a w x h
// (upright) source: cover and fill answer exactly the box, contain fits inside it and
// never enlarges; a side left out follows the aspect ratio.
func wantSize(w, h int, o Output) image.Point {
	boxW, boxH := o.Width, o.Height
	if boxW == 0 {
		boxW = max(1, roundDiv(w*boxH, h))
	}
	if boxH == 0 {
		boxH = max(1, roundDiv(h*boxW, w))
	}
	if o.Fit == FitCover || o.Fit == FitFill {
		return image.Pt(boxW, boxH)
	}
	return containSize(w, h, boxW, boxH)
}

// setSources are the sources the set tests make outputs of: the corpus photos, and a
// few files that test alpha, grey, animation and orientation.
func setSources(t *testing.T) []testcorpus.Row {
	var rows []testcorpus.Row
	for _, row := range testcorpus.Read(t, "testdata") {
		switch {
		case row.Category == "photo" && !(testing.Short() && row.Width*row.Height > 4_000_000),
			row.File == "formats/webp/goimage-yellow_rose.lossy-with-alpha.webp",
			row.File == "formats/gif/sharp-rotating-squares.gif",
			row.File == "pngsuite/basn4a16.png",
			row.File == "exif-orientation/recurser-Landscape_6.jpg":
			rows = append(rows, row)
		}
	}
	is.New(t).True(len(rows) >= 8)
	return rows
}

// uprightSize is a manifest row's size once upright.
func uprightSize(t *testing.T, row testcorpus.Row, src []byte) image.Point {
	h, err := ReadHeader(src)
	is.New(t).NoErr(err)
	if transposes(orientationOf(h.Format, src)) {
		return image.Pt(h.Height, h.Width)
	}
	return image.Pt(h.Width, h.Height)
}

// Every fit in every format, three outputs per job: each output has the size its fit
// rule gives, the format asked (sniffed from its bytes), no metadata, and comes back
// under its name in the order asked.
func TestMakeSetEveryFitInEveryFormat(t *testing.T) {
	formats := []Format{FormatJPEG, FormatPNG, FormatWebP}
	for _, row := range setSources(t) {
		src := readTestdata(t, row.File)
		size := uprightSize(t, row, src)
		for i, fit := range []Fit{FitContain, FitCover, FitFill} {
			t.Run(row.File+"/"+string(fit), func(t *testing.T) {
				is := is.New(t)
				// Each fit gives each format a different size, so that over the three
				// fits every format is made large, middling and small.
				outputs := []Output{
					{Name: "large", Width: 300, Height: 200, Fit: fit, Format: formats[i%3]},
					{Name: "middle", Width: 120, Height: 160, Fit: fit, Format: formats[(i+1)%3], Quality: 60},
					{Name: "small", Width: 48, Fit: fit, Format: formats[(i+2)%3]},
				}
				set, err := MakeSet(context.Background(), src, outputs, 0)
				is.NoErr(err)
				is.Equal(len(set.Outputs), len(outputs))
				is.Equal(set.Engine, Default.Name()+"/"+Default.Version())
				for j, o := range outputs {
					res := set.Outputs[j]
					is.Equal(res.Name, o.Name) // in the order asked
					is.Equal(image.Pt(res.Width, res.Height), wantSize(size.X, size.Y, o))
					f, err := Sniff(res.Data)
					is.NoErr(err)
					is.Equal(f, o.Format)
					checkOutput(t, res, o.spec(0))
					is.True(res.EncodeTime > 0)
				}
				is.Equal(len(set.Placeholder.BlurHash), 28) // 4x3 components
				is.True(strings.HasPrefix(set.Placeholder.DominantColor, "#"))
			})
		}
	}
}

// Every output of a set is upright, whatever its fit: each is compared with the same
// output of the set's upright file, as TestEXIFOrientationComesOutUpright does for
// single thumbnails.
func TestMakeSetOutputsAreUpright(t *testing.T) {
	outputs := []Output{
		{Name: "contain", Width: 64, Height: 64, Format: FormatPNG},
		{Name: "cover", Width: 72, Height: 72, Fit: FitCover, Format: FormatPNG},
		{Name: "fill", Width: 80, Height: 60, Fit: FitFill, Format: FormatPNG},
	}
	thumbs := func(t *testing.T, file string) []*image.RGBA {
		set, err := MakeSet(context.Background(), readTestdata(t, file), outputs, 0)
		is.New(t).NoErr(err)
		var imgs []*image.RGBA
		for _, res := range set.Outputs {
			img, err := png.Decode(bytes.NewReader(res.Data))
			is.New(t).NoErr(err)
			imgs = append(imgs, toRGBA(img))
		}
		return imgs
	}
	for set, files := range orientationSets(t) {
		refs := thumbs(t, referenceFile(files))
		for n, file := range files {
			t.Run(file, func(t *testing.T) {
				for i, got := range thumbs(t, file) {
					checkUpright(t, fmt.Sprintf("%s orientation %d, %s", set, n, outputs[i].Name), got, refs[i])
				}
			})
		}
	}
}

func TestMakeSetChecksEveryOutputAtOnce(t *testing.T) {
	src := readTestdata(t, "photos/Canon_40D.jpg")
	nine := make([]Output, 9)
	for i := range nine {
		nine[i] = Output{Width: 10}
	}
	for _, c := range []struct {
		name     string
		outputs  []Output
		problems []string // parts of the message; none when valid
	}{
		{"one", []Output{{Width: 10}}, nil},
		{"eight", nine[:8], nil},
		{"none", nil, []string{"at least one output must be asked for"}},
		{"nine", nine, []string{"a job may ask for at most 8 outputs, not 9"}},
		{"same name", []Output{{Name: "a", Width: 10}, {Name: "a", Width: 20}}, []string{`the output name "a" is used more than once`}},
		{"a default name taken", []Output{{Width: 10}, {Name: "o1", Width: 20}}, []string{`the output name "o1" is used more than once`}},
		{"bad gravity", []Output{{Width: 10, Fit: FitCover, Gravity: "north"}}, []string{`output "o1": gravity must be center, attention, entropy or focal, not "north"`}},
		{"focal without a point", []Output{{Width: 10, Gravity: GravityFocal}}, []string{`output "o1": gravity focal needs a focal point`}},
		{"a point with another gravity", []Output{{Width: 10, Gravity: GravityEntropy, Focal: &Point{0.5, 0.5}}}, []string{"a focal point goes with gravity focal, not entropy"}},
		{"a point outside", []Output{{Width: 10, Focal: &Point{1.5, 0.5}}}, []string{"the focal point must lie within the image"}},
		{"a point that is not a number", []Output{{Width: 10, Focal: &Point{math.NaN(), 0}}}, []string{"the focal point must lie within the image"}},
		{"a point with no gravity", []Output{{Width: 10, Height: 10, Fit: FitCover, Focal: &Point{0, 1}}}, nil},
		{"every problem, each under its output", []Output{
			{Name: "big", Width: -1, Fit: "stretch"},
			{Name: "small", Width: 10, Quality: 101, Format: FormatGIF},
			{Name: "small", Width: 10},
		}, []string{
			`output "big": width must be between 1 and 16383`,
			`output "big": fit must be contain, cover or fill, not "stretch"`,
			`output "small": quality must be between 1 and 100, not 101`,
			`output "small": format must be jpeg, png or webp, not "gif"`,
			`the output name "small" is used more than once`,
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			set, err := MakeSet(context.Background(), src, c.outputs, 0)
			if c.problems == nil {
				is.NoErr(err)
				is.Equal(len(set.Outputs), len(c.outputs))
				return
			}
			is.Equal(CodeOf(err), CodeInvalidSpec)
			var e *Error
			is.True(errors.As(err, &e))
			for _, p := range c.problems {
				if !strings.Contains(e.Message, p) {
					t.Errorf("the message %q does not say %q", e.Message, p)
				}
			}
		})
	}
	_, err := MakeSet(context.Background(), src, []Output{{Width: 10}}, -1)
	is.New(t).True(strings.Contains(err.Error(), "the pixel limit must be positive, not -1"))
}

func TestMakeSetNamesOutputsByPositionWhenUnnamed(t *testing.T) {
	is := is.New(t)
	set, err := MakeSet(context.Background(), readTestdata(t, "photos/Canon_40D.jpg"), []Output{{Width: 20}, {Name: "x", Width: 10}, {Width: 5}}, 0)
	is.NoErr(err)
	is.Equal([]string{set.Outputs[0].Name, set.Outputs[1].Name, set.Outputs[2].Name}, []string{"o1", "x", "o3"})
}

func TestMakeSetNamesTheOutputThatCannotBeMade(t *testing.T) {
	is := is.New(t)
	src := readTestdata(t, "photos/Canon_40D.jpg") // 100x68
	_, err := MakeSet(context.Background(), src, []Output{{Name: "fine", Width: 10}, {Name: "huge", Width: 16000, Height: 16000, Fit: FitCover}}, 1_000_000)
	is.Equal(CodeOf(err), CodeTooManyPixels)
	var e *Error
	is.True(errors.As(err, &e))
	is.True(strings.HasPrefix(e.Message, `output "huge": resizing the image as asked needs`))
}

func TestMakeSetGuardsTheSource(t *testing.T) {
	is := is.New(t)
	_, err := MakeSet(context.Background(), readTestdata(t, "photos/Storm.jpg"), []Output{{Width: 10}, {Width: 20}}, 1_000_000)
	is.Equal(CodeOf(err), CodeTooManyPixels)
	is.True(strings.Contains(err.Error(), "the image is 1920x1280 pixels (2457600); the limit is 1000000 pixels"))
}

// Make is a set of one: the same bytes, named "default", with the set's timings.
func TestMakeIsASetOfOne(t *testing.T) {
	src := readTestdata(t, "photos/Storm.jpg")
	for _, spec := range []Spec{
		{Width: 256, Height: 256},
		{Width: 100, Height: 150, Fit: FitCover, Format: FormatPNG, Gravity: GravityAttention},
		{Width: 120, Fit: FitFill, Height: 30, Format: FormatWebP, Quality: 50},
	} {
		is := is.New(t)
		res, err := Make(context.Background(), src, spec)
		is.NoErr(err)
		set, err := MakeSet(context.Background(), src, []Output{spec.output()}, 0)
		is.NoErr(err)
		is.Equal(res.Name, "default")
		is.Equal(set.Outputs[0].Name, "default")
		is.True(bytes.Equal(res.Data, set.Outputs[0].Data))
		is.True(res.Timings[StageDecode] > 0)
		is.Equal(set.Outputs[0].Timings, nil) // a set's timings are the set's
	}
}

// The largest output of a set, when it is at least as large as every other in both
// directions, is made exactly as a job of its own would make it; the others are
// scaled from the same decode and look the same as their own jobs' (PSNR).
func TestSetOutputsAreWhatTheirOwnJobsMake(t *testing.T) {
	src := readTestdata(t, "photos/Storm.jpg")
	outputs := []Output{
		{Name: "large", Width: 640, Height: 640, Format: FormatPNG},
		{Name: "middle", Width: 256, Height: 256, Format: FormatPNG},
		{Name: "cover", Width: 100, Height: 100, Fit: FitCover, Format: FormatPNG},
		{Name: "small", Width: 64, Format: FormatPNG},
	}
	set, err := MakeSet(context.Background(), src, outputs, 0)
	is.New(t).NoErr(err)
	for i, o := range outputs {
		t.Run(o.Name, func(t *testing.T) {
			is := is.New(t)
			alone, err := MakeSet(context.Background(), src, []Output{o}, 0)
			is.NoErr(err)
			if i == 0 {
				is.True(bytes.Equal(set.Outputs[i].Data, alone.Outputs[0].Data)) // byte for byte
				return
			}
			p := psnr(decodePNG(t, set.Outputs[i].Data), decodePNG(t, alone.Outputs[0].Data))
			t.Logf("%s: %.1f dB against its own job", o.Name, p)
			is.True(p > 35) // no visible difference
		})
	}
}

func decodePNG(t *testing.T, data []byte) *image.RGBA {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	is.New(t).NoErr(err)
	return toRGBA(img)
}

// A job of several outputs decodes its source once: counted where each engine
// decodes, and shown in time by BenchmarkMakeSet.
func TestMakeSetDecodesOnce(t *testing.T) {
	for _, e := range testEngines() {
		t.Run(e.Name(), func(t *testing.T) {
			is := is.New(t)
			before := decodes.Load()
			set, err := e.MakeSet(context.Background(), readTestdata(t, "photos/Storm.jpg"), []Output{
				{Width: 1024}, {Width: 512, Format: FormatWebP}, {Width: 256, Height: 256, Fit: FitCover, Gravity: GravityAttention},
			}, 0)
			is.NoErr(err)
			is.Equal(len(set.Outputs), 3)
			is.Equal(decodes.Load()-before, int64(1)) // one decode for three outputs
		})
	}
}

// testEngines is every engine this build has: the pure-Go one, and libvips with the
// vips tag.
func testEngines() []Engine {
	if Default.Name() == "go" {
		return []Engine{Default}
	}
	return []Engine{Default, goEngine{}}
}

func TestDecodeSize(t *testing.T) {
	src := image.Pt(4032, 3024)
	for _, c := range []struct {
		name   string
		scales []image.Point
		want   image.Point
	}{
		{"one", []image.Point{{256, 192}}, image.Pt(256, 192)},
		{"one enlarged", []image.Point{{8064, 6048}}, image.Pt(8064, 6048)},
		{"one stretched", []image.Point{{300, 50}}, image.Pt(300, 50)},
		{"the largest covers the rest", []image.Point{{256, 192}, {1024, 768}, {341, 256}}, image.Pt(1024, 768)},
		{"none covers the rest", []image.Point{{300, 50}, {256, 192}}, image.Pt(300, 225)},
		{"a tall stretch", []image.Point{{10, 1000}, {256, 192}}, image.Pt(1334, 1000)},
		{"never past the source", []image.Point{{5000, 10}, {100, 4000}}, image.Pt(4032, 3024)},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			got := decodeSize(c.scales, src)
			is.Equal(got, c.want)
			for _, s := range c.scales {
				is.True(got.X >= min(s.X, src.X) && got.Y >= min(s.Y, src.Y)) // every output is scaled down, or from the whole source
			}
		})
	}
}
