package thumbnail

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/matryer/is"
	xwebp "golang.org/x/image/webp"

	"github.com/thumbnailed/thumbnailed/thumbnail/internal/testcorpus"
)

// The corpus in testdata/ comes from shared/testdata/images with its MANIFEST.tsv
// (read by testcorpus): the tests here are driven by its rows, so a file added to the
// manifest is tested too.

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// expectedCode is what the default engine must answer for a manifest row: "" for a
// thumbnail, or an error code. The manifest words its expectations for any engine
// ("thumbnail if TIFF accepted, else reject"); this reads them for Default, so the
// pure-Go and the libvips builds pass the same table.
func expectedCode(row testcorpus.Row) string {
	accepted := Default.Accepts(manifestFormat(row))
	switch {
	case row.Category == "png-conformance" && row.Rejected():
		return CodeCorruptImage // including a PNG whose signature was mangled
	case !accepted:
		return CodeUnsupportedFormat
	case strings.HasPrefix(row.Expected, "thumbnail"): // "thumbnail if TIFF accepted, else …"
		return ""
	case strings.HasPrefix(row.File, "hostile/bomb/"):
		return CodeTooManyPixels
	case strings.Contains(row.Expected, "unsupported"): // e.g. lossless JPEG
		return CodeUnsupportedFormat
	}
	return CodeCorruptImage
}

// manifestFormat is the format a manifest row describes ("JPEG (progressive)",
// "HEIF (brand 'mif1')"), or "" for anything no engine of ours decodes.
func manifestFormat(row testcorpus.Row) Format {
	for _, c := range []struct {
		prefix string
		format Format
	}{
		{"JPEG 2000", ""}, {"JPEG", FormatJPEG}, {"PNG", FormatPNG}, {"GIF", FormatGIF},
		{"WEBP", FormatWebP}, {"TIFF", FormatTIFF}, {"AVIF", FormatAVIF},
		{"HEIC", FormatHEIC}, {"HEIF", FormatHEIC},
	} {
		if strings.HasPrefix(row.Format, c.prefix) {
			return c.format
		}
	}
	return ""
}

// mayRecover reports whether the manifest also accepts a thumbnail from a lenient
// decoder ("reject: truncated JPEG (or thumbnail of the partially decoded image…"),
// or the default engine's decoder overlooks the row's one defect by design.
func mayRecover(row testcorpus.Row) bool {
	return strings.Contains(row.Expected, "or thumbnail") || strings.Contains(row.Expected, "or partial thumbnail") ||
		overlooked[Default.Name()][row.File]
}

// overlooked lists, per engine, the corpus files whose only defect its decoder skips
// on purpose.
var overlooked = map[string]map[string]bool{
	// libvips has libpng skip the zlib stream's Adler-32 check (it costs time and
	// protects nothing libpng's chunk CRCs do not): this file's pixels are intact and
	// only that checksum is wrong.
	"vips": {"hostile/corrupt/go-png-invalid-zlib.png": true},
}

func TestCorpusEveryFileGetsTheManifestsAnswer(t *testing.T) {
	rows := testcorpus.Read(t, "testdata")
	is.New(t).True(len(rows) > 150) // the whole corpus is there
	for _, row := range rows {
		if row.Category == "photo" {
			continue // TestPhotos makes nine thumbnails of each
		}
		t.Run(row.File, func(t *testing.T) {
			is := is.New(t)
			want := expectedCode(row)
			spec := Spec{Width: 96, Height: 96}
			res, err := Make(context.Background(), readTestdata(t, row.File), spec)
			if err != nil {
				var e *Error
				is.True(errors.As(err, &e))           // every error is an *Error
				is.True(e.Message != "")              // with a message for a person
				is.True(!errors.Is(err, errPanicked)) // a refusal, not a recovered crash
			}
			if want == "" || mayRecover(row) && err == nil {
				is.NoErr(err)
				checkOutput(t, res, spec)
				return
			}
			is.Equal(CodeOf(err), want) // err: see the manifest row
		})
	}
}

func TestFormatsThisEngineDoesNotDecodeAreUnsupported(t *testing.T) {
	for name, format := range map[string]Format{
		"formats/tiff/goimage-video-001.tiff":               FormatTIFF,
		"formats/bmp/goimage-video-001.bmp":                 "",
		"formats/avif/linku-fox.profile0.10bpc.yuv420.avif": FormatAVIF,
		"formats/heic/libheif-example.heic":                 FormatHEIC,
		"formats/other/sharp-relax.jp2":                     "",
		"formats/svg/sharp-check.svg":                       "",
	} {
		if Default.Accepts(format) {
			continue
		}
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			src := readTestdata(t, name)
			_, err := Sniff(src)
			is.Equal(CodeOf(err), CodeUnsupportedFormat)
			_, err = Make(context.Background(), src, Spec{Width: 64})
			is.Equal(CodeOf(err), CodeUnsupportedFormat)
			is.True(strings.Contains(err.Error(), "this build accepts "+acceptedList(Default)))
		})
	}
}

func TestUnsupportedMessagesNameWhatTheFileIs(t *testing.T) {
	for name, what := range map[string]string{
		"formats/bmp/goimage-video-001.bmp":                "the file is a BMP image; this build accepts " + acceptedList(Default),
		"formats/svg/sharp-check.svg":                      "the file is an SVG document;",
		"hostile/misc/corkami-html-document.jpg":           "the file is an HTML document;",
		"hostile/misc/empty.jpg":                           "the file is empty;",
		"hostile/misc/patt-imagetragick-mvg-url-touch.jpg": "the file is an ImageMagick vector script (MVG);",
		"formats/other/sharp-relax.jp2":                    "the file is a JPEG 2000 image;",
		"formats/other/sharp-testimgl-lossless-sof3.jpg":   "the file is a JPEG image with lossless coding;",
	} {
		_, err := Make(context.Background(), readTestdata(t, name), Spec{Width: 64})
		var e *Error
		is.New(t).True(errors.As(err, &e))
		if !strings.HasPrefix(e.Message, what) {
			t.Errorf("%s: message %q does not start with %q", name, e.Message, what)
		}
	}
	// The formats only libvips decodes are named too, by the build that refuses them.
	for name, what := range map[string]string{
		"formats/tiff/goimage-video-001.tiff":   "the file is a TIFF image; this build accepts JPEG, PNG, GIF and WebP",
		"formats/heic/libheif-example.heic":     "the file is a HEIC image;",
		"hostile/bomb/libvips-17000x17000.avif": "the file is an AVIF image;",
	} {
		_, err := sniffFor(goEngine{}, readTestdata(t, name))
		var e *Error
		is.New(t).True(errors.As(err, &e))
		if !strings.HasPrefix(e.Message, what) {
			t.Errorf("%s: message %q does not start with %q", name, e.Message, what)
		}
	}
}

func TestPhotos(t *testing.T) {
	for _, row := range testcorpus.Read(t, "testdata") {
		if row.Category != "photo" {
			continue
		}
		if testing.Short() && row.Width*row.Height > 4_000_000 {
			continue
		}
		src := readTestdata(t, row.File)
		w, h := row.Width, row.Height
		for _, c := range []struct {
			name string
			spec Spec
			want image.Point
		}{
			{"contain", Spec{Width: 256, Height: 256}, containSize(w, h, 256, 256)},
			{"cover", Spec{Width: 200, Height: 120, Fit: FitCover}, image.Pt(200, 120)},
			{"fill", Spec{Width: 300, Height: 50, Fit: FitFill}, image.Pt(300, 50)},
			{"width only", Spec{Width: 64}, image.Pt(64, roundDiv(h*64, w))},
			{"height only", Spec{Height: 64}, image.Pt(roundDiv(w*64, h), 64)},
			{"no enlarge", Spec{Width: 2 * w, Height: 2 * h}, image.Pt(w, h)},
			{"enlarge", Spec{Width: 2 * w, Height: 2 * h, Enlarge: true}, image.Pt(2*w, 2*h)},
			{"png", Spec{Width: 100, Height: 100, Format: FormatPNG}, containSize(w, h, 100, 100)},
			{"webp", Spec{Width: 100, Height: 100, Format: FormatWebP}, containSize(w, h, 100, 100)},
		} {
			if strings.Contains(c.name, "enlarge") && w*h > 1_000_000 {
				continue // a full-size or larger output of a big photo only takes time
			}
			t.Run(row.File+"/"+c.name, func(t *testing.T) {
				is := is.New(t)
				res, err := Make(context.Background(), src, c.spec)
				is.NoErr(err)
				is.Equal(image.Pt(res.Width, res.Height), c.want)
				checkOutput(t, res, c.spec)
			})
		}
	}
}

// containSize is the expected contain size, worked out in floating point as a person
// would: the largest scale that fits, never above 1.
func containSize(w, h, boxW, boxH int) image.Point {
	scaleW, scaleH := float64(boxW)/float64(w), float64(boxH)/float64(h)
	switch {
	case scaleW >= 1 && scaleH >= 1:
		return image.Pt(w, h)
	case scaleW <= scaleH:
		return image.Pt(boxW, max(1, roundDiv(h*boxW, w)))
	}
	return image.Pt(max(1, roundDiv(w*boxH, h)), boxH)
}

func roundDiv(a, b int) int { return (2*a + b) / (2 * b) }

// checkOutput decodes a thumbnail again and checks what the client relies on: the
// format is what was asked, the size is what Result says, and no metadata came along.
func checkOutput(t *testing.T, res Result, spec Spec) image.Image {
	t.Helper()
	is := is.NewRelaxed(t)
	want := spec.withDefaults().Format
	is.Equal(res.Format, want)
	is.Equal(res.ContentType, "image/"+string(want))
	is.True(strings.HasPrefix(res.Engine, Default.Name()+"/"))
	f, err := Sniff(res.Data)
	is.NoErr(err)
	is.Equal(f, want) // the bytes are what Result says they are
	var img image.Image
	switch want {
	case FormatJPEG:
		img, err = jpeg.Decode(bytes.NewReader(res.Data))
		jpegSegments(res.Data, func(marker byte, _ []byte) bool {
			if marker >= 0xe1 && marker <= 0xef || marker == 0xfe {
				t.Errorf("the JPEG output carries an APP%d/COM segment (0xff%x)", marker-0xe0, marker)
			}
			return true
		})
	case FormatPNG:
		img, err = png.Decode(bytes.NewReader(res.Data))
		for _, chunk := range []string{"eXIf", "tEXt", "zTXt", "iTXt", "iCCP"} {
			is.True(!bytes.Contains(res.Data, []byte(chunk))) // no metadata chunk
		}
	case FormatWebP:
		img, err = xwebp.Decode(bytes.NewReader(res.Data))
		webpChunks(res.Data, func(id string, _ []byte) bool {
			if id == "EXIF" || id == "XMP " || id == "ICCP" {
				t.Errorf("the WebP output carries a %s chunk", id)
			}
			return true
		})
	}
	is.NoErr(err) // the output decodes
	if err != nil {
		return nil
	}
	is.Equal(img.Bounds().Size(), image.Pt(res.Width, res.Height))
	return img
}

func TestBombsAreRefusedBeforeDecoding(t *testing.T) {
	for _, c := range []struct {
		name    string
		message string
	}{
		{"hostile/bomb/fuzzdb-lottapixel.jpg", "the image is 64250x64250 pixels (4128062500); the limit is 50000000 pixels"},
		{"hostile/bomb/saferimg-pngbomb-32000x32000.png", "the image is 32000x32000 pixels (1024000000); the limit is 50000000 pixels"},
		{"hostile/bomb/pillow-decompression_bomb.gif", "the GIF's first frame is 65535x1321 pixels, larger than its 32x32 canvas"},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			src := readTestdata(t, c.name)
			var err error
			allocated := bytesAllocated(func() {
				_, err = Make(context.Background(), src, Spec{Width: 256})
			})
			is.Equal(CodeOf(err), CodeTooManyPixels)
			var e *Error
			is.True(errors.As(err, &e))
			is.Equal(e.Message, c.message)
			if allocated > 1<<20 {
				t.Errorf("refusing %s allocated %d bytes; the refusal must come before decoding", c.name, allocated)
			}
		})
	}
}

func TestPNGTextChunksAreNotInflated(t *testing.T) {
	// A 6 KB PNG whose zTXt chunk inflates to far more: the decoder must skip it.
	is := is.New(t)
	src := readTestdata(t, "hostile/bomb/pillow-png_decompression_dos.png")
	var (
		res Result
		err error
	)
	allocated := bytesAllocated(func() {
		res, err = Make(context.Background(), src, Spec{Width: 16, Format: FormatPNG})
	})
	is.NoErr(err)
	is.Equal([2]int{res.Width, res.Height}, [2]int{1, 1})
	if allocated > 4<<20 {
		t.Errorf("a 1x1 PNG allocated %d bytes: text chunks are being inflated", allocated)
	}
}

// bytesAllocated is how many heap bytes fn allocates.
func bytesAllocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
