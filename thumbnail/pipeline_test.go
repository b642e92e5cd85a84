package thumbnail

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

func TestMakeChecksTheSpecFirst(t *testing.T) {
	is := is.New(t)
	_, err := Make(context.Background(), []byte("not an image"), Spec{Width: -5})
	is.Equal(CodeOf(err), CodeInvalidSpec) // before the bytes are looked at
	_, err = Make(context.Background(), readTestdata(t, "photos/Canon_40D.jpg"), Spec{Width: 10, Format: FormatGIF})
	is.Equal(CodeOf(err), CodeInvalidSpec)
}

func TestMakeHonoursTheDeadline(t *testing.T) {
	is := is.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	_, err := Make(ctx, readTestdata(t, "photos/Canon_40D.jpg"), Spec{Width: 10})
	is.Equal(CodeOf(err), CodeTimeout)
	var e *Error
	is.True(errors.As(err, &e))
	is.Equal(e.Message, "the image took longer than the job's time limit to process")
	is.True(errors.Is(err, context.DeadlineExceeded)) // the cause is kept
}

func TestPipelineStopsBetweenStepsOnceTheContextIsDone(t *testing.T) {
	is := is.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ran []string
	steps := []step{
		{"first", func(*job) error { ran = append(ran, "first"); cancel(); return nil }, StagePrepare},
		{"second", func(*job) error { ran = append(ran, "second"); return nil }, StagePrepare},
	}
	err := runPipeline(ctx, &job{}, steps)
	is.Equal(CodeOf(err), CodeTimeout)
	is.Equal(ran, []string{"first"})
}

func TestPipelineTurnsAPanicIntoCorruptImage(t *testing.T) {
	is := is.New(t)
	steps := []step{{"decode", func(*job) error {
		var m *image.RGBA
		_ = m.Pix[0] // what a decoder bug looks like
		return nil
	}, StageDecode}}
	err := runPipeline(context.Background(), &job{}, steps)
	is.Equal(CodeOf(err), CodeCorruptImage)
	is.True(errors.Is(err, errPanicked))
	is.True(strings.Contains(err.Error(), `in step "decode"`))
}

func TestMakeResult(t *testing.T) {
	is := is.New(t)
	res, err := Make(context.Background(), readTestdata(t, "photos/canon5d-adobergb-400x400.jpg"), Spec{Width: 100, Format: FormatWebP, Quality: 60})
	is.NoErr(err)
	is.Equal(res.Format, FormatWebP)
	is.Equal(res.ContentType, "image/webp")
	is.Equal([2]int{res.Width, res.Height}, [2]int{100, 100})
	is.Equal(res.Engine, Default.Name()+"/"+Default.Version())
}

// stripes is a PNG of three vertical stripes, red, green and blue, w x h.
func stripes(t *testing.T, w, h int) []byte {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := []color.RGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}}[3*x/w]
			m.SetRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	is.New(t).NoErr(png.Encode(&buf, m))
	return buf.Bytes()
}

func TestCoverKeepsTheCentre(t *testing.T) {
	is := is.New(t)
	res, err := Make(context.Background(), stripes(t, 900, 100), Spec{Width: 50, Height: 50, Fit: FitCover, Format: FormatPNG})
	is.NoErr(err)
	img, err := png.Decode(bytes.NewReader(res.Data))
	is.NoErr(err)
	is.Equal(img.Bounds().Size(), image.Pt(50, 50))
	for _, p := range []image.Point{{0, 0}, {49, 49}, {25, 25}} {
		r, g, b, _ := img.At(p.X, p.Y).RGBA()
		is.True(g > 0xf000 && r < 0x1000 && b < 0x1000) // only the green middle stripe is left
	}
}

func TestTransparencyIsFlattenedOnWhiteForJPEGAndKeptOtherwise(t *testing.T) {
	src := readTestdata(t, "formats/webp/goimage-yellow_rose.lossy-with-alpha.webp") // transparent corners
	for _, format := range []Format{FormatJPEG, FormatPNG, FormatWebP} {
		t.Run(string(format), func(t *testing.T) {
			is := is.New(t)
			spec := Spec{Width: 100, Format: format}
			res, err := Make(context.Background(), src, spec)
			is.NoErr(err)
			img := checkOutput(t, res, spec)
			r, g, b, a := img.At(0, 0).RGBA()
			if format == FormatJPEG {
				is.True(r > 0xf000 && g > 0xf000 && b > 0xf000) // white, not black
				return
			}
			is.Equal(a, uint32(0)) // still transparent
		})
	}
}

func TestAnimatedImagesGiveTheirFirstFrame(t *testing.T) {
	for _, name := range []string{"formats/gif/sharp-rotating-squares.gif", "formats/webp/sharp-rotating-squares.webp"} {
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			spec := Spec{Width: 80, Format: FormatPNG}
			res, err := Make(context.Background(), readTestdata(t, name), spec)
			is.NoErr(err)
			img := checkOutput(t, res, spec)
			// The first frame of both: a 3x3 grid of squares with the top-left one
			// light blue and the centre one missing.
			r, g, b, _ := img.At(16, 16).RGBA()
			is.True(b > 0xc000 && g > 0x9000 && r < 0x8000) // light blue top-left square
		})
	}
}

func TestAnimatedWebPFrameMustFitTheCanvas(t *testing.T) {
	is := is.New(t)
	src := bytes.Clone(readTestdata(t, "formats/webp/sharp-rotating-squares.webp"))
	// Move the first frame's x offset (in units of 2 pixels) far to the right.
	var anmf []byte
	webpChunks(src, func(id string, data []byte) bool {
		if id == "ANMF" {
			anmf = data
			return false
		}
		return true
	})
	is.True(anmf != nil)
	anmf[0] = 200
	_, err := Make(context.Background(), src, Spec{Width: 80})
	is.Equal(CodeOf(err), CodeCorruptImage)
}

func TestGoEngine(t *testing.T) {
	is := is.New(t)
	e := goEngine{}
	is.Equal(e.Name(), "go")
	is.True(strings.HasPrefix(e.Version(), "go1."))
	for _, f := range []Format{FormatJPEG, FormatPNG, FormatGIF, FormatWebP} {
		is.True(e.Accepts(f))
	}
	for _, f := range []Format{FormatTIFF, FormatAVIF, FormatHEIC} {
		is.True(!e.Accepts(f))
	}
	for _, f := range []Format{FormatJPEG, FormatPNG, FormatWebP} {
		is.True(e.Encodes(f))
	}
	is.True(!e.Encodes(FormatGIF))
}

func TestMakeReportsTheTimeOfEachStage(t *testing.T) {
	is := is.New(t)
	src, err := os.ReadFile("testdata/photos/go-video-001.jpeg")
	is.NoErr(err)
	res, err := Make(context.Background(), src, Spec{Width: 32})
	is.NoErr(err)
	// Both engines report the same stages.
	for _, stage := range []string{StagePrepare, StageDecode, StageResize, StagePlaceholder, StageEncode} {
		if res.Timings[stage] <= 0 {
			t.Errorf("stage %s took %v", stage, res.Timings[stage])
		}
	}
	is.Equal(len(res.Timings), 5) // and no other
	is.True(res.EncodeTime > 0)
	is.True(res.EncodeTime <= res.Timings[StageEncode])
}
