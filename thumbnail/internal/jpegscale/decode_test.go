package jpegscale

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/matryer/is"
)

var denoms = []int{1, 2, 4, 8}

func TestDenom(t *testing.T) {
	for _, tc := range []struct {
		w, h, minW, minH int
		want             int
	}{
		{4032, 3024, 512, 384, 4},   // 1008x756 (504x378 at 1/8 is too small)
		{4224, 3168, 512, 384, 8},   // 528x396
		{2560, 3837, 512, 767, 4},   // 640x960 (320x480 at 1/8)
		{1920, 1280, 512, 341, 2},   // 960x640
		{400, 400, 512, 512, 1},     // already smaller than the target
		{4096, 4096, 512, 512, 8},   // exactly 512x512
		{4089, 4096, 512, 512, 8},   // ceil(4089/8) = 512
		{4088, 4096, 512, 512, 4},   // 511 wide at 1/8
		{1025, 10, 256, 2, 4},       // ceil(1025/4) = 257
		{1024, 10, 257, 2, 2},       // 256 wide at 1/4
		{100, 68, 512, 348, 1},      // tiny photo
		{1, 1, 1, 1, 8},             // 1x1 stays 1x1 at every scale
		{16, 16, 0, 0, 8},           // no minimum
		{3000, 2000, 3000, 2000, 1}, // full size wanted
	} {
		t.Run(fmt.Sprintf("%dx%d>=%dx%d", tc.w, tc.h, tc.minW, tc.minH), func(t *testing.T) {
			is.New(t).Equal(Denom(tc.w, tc.h, tc.minW, tc.minH), tc.want)
		})
	}
}

// TestCorpusFullSizeMatchesImageJPEG: at denom 1, every corpus JPEG that
// image/jpeg decodes decodes to the same pixels, type and bounds.
func TestCorpusFullSizeMatchesImageJPEG(t *testing.T) {
	n := 0
	for _, row := range jpegRows(t) {
		if skipLarge(row.File) {
			continue
		}
		want, err := stdlibDecode(t, row.File)
		if err != nil {
			continue
		}
		n++
		t.Run(row.File, func(t *testing.T) {
			is := is.New(t)
			got, err := Decode(readTestdata(t, row.File), 1)
			if errors.Is(err, ErrUnsupported) {
				t.Logf("falls back to image/jpeg: %v", err)
				is.True(row.Category == "hostile") // only a damaged file may need image/jpeg
				return
			}
			is.NoErr(err)
			is.Equal(samePixels(got, want, 0), "") // same as image/jpeg
		})
	}
	if n < 30 && !raceEnabled || n < 15 {
		t.Errorf("only %d corpus JPEGs decoded by image/jpeg", n)
	}
}

// TestCorpusScaledShapes: at every scale, the result has the type of
// image/jpeg's result, with ceil(w/denom) x ceil(h/denom) pixels. (The
// photos are TestPhotosScaledPSNR's.)
func TestCorpusScaledShapes(t *testing.T) {
	for _, row := range jpegRows(t) {
		if row.Rejected() || row.Category == "photo" || skipLarge(row.File) {
			continue
		}
		t.Run(row.File, func(t *testing.T) {
			want, err := stdlibDecode(t, row.File)
			is := is.New(t)
			is.NoErr(err) // the manifest says image/jpeg decodes it
			for _, denom := range denoms {
				got, err := Decode(readTestdata(t, row.File), denom)
				is.NoErr(err)
				checkShape(t, got, want, denom)
			}
		})
	}
}

// checkShape checks that got, decoded at 1/denom, has the type of want,
// decoded at full size by image/jpeg, and ceil(w/denom) x ceil(h/denom)
// pixels.
func checkShape(t *testing.T, got, want image.Image, denom int) {
	t.Helper()
	is := is.New(t)
	w, h := want.Bounds().Dx(), want.Bounds().Dy()
	is.Equal(fmt.Sprintf("%T", got), fmt.Sprintf("%T", want))
	is.Equal(got.Bounds(), image.Rect(0, 0, (w+denom-1)/denom, (h+denom-1)/denom))
	if y, ok := got.(*image.YCbCr); ok {
		is.Equal(y.SubsampleRatio, want.(*image.YCbCr).SubsampleRatio)
		cw, ch := chromaSize(y.Rect, y.SubsampleRatio)
		is.True(len(y.Cb) >= (ch-1)*y.CStride+cw) // the chroma planes cover the image
	}
}

// TestCorpusRejected: every corpus file the manifest says to reject that
// could be a JPEG is refused with an error, never an image or a panic.
func TestCorpusRejected(t *testing.T) {
	n := 0
	for _, row := range jpegRows(t) {
		if !row.Rejected() {
			continue
		}
		n++
		t.Run(row.File, func(t *testing.T) {
			for _, denom := range denoms {
				m, err := Decode(readTestdata(t, row.File), denom)
				t.Logf("1/%d: %v", denom, err)
				is := is.New(t)
				is.True(err != nil) // refused
				is.True(m == nil)   // and no image
			}
		})
	}
	if n < 10 {
		t.Errorf("only %d JPEGs to reject in the manifest", n)
	}
}

// TestCorpusRejectedHow pins down how some corpus files are refused.
func TestCorpusRejectedHow(t *testing.T) {
	for _, tc := range []struct {
		file        string
		unsupported bool  // ErrUnsupported: image/jpeg decides
		is          error // else, a specific error (or nil for any)
	}{
		{"hostile/truncated/sharp-truncated.jpg", false, io.ErrUnexpectedEOF},
		{"hostile/corrupt/sharp-corrupt-header.jpg", false, io.ErrUnexpectedEOF},
		{"hostile/misc/empty.jpg", false, io.ErrUnexpectedEOF},
		{"hostile/fuzz/imagetestsuite-jpg-8a9cc8eeed66aeb423a91c44111d9450.jpg", false, io.ErrUnexpectedEOF},
		{"hostile/fuzz/imagetestsuite-jpg-4085c929e00c446d3fee18b5b20a27f9.jpg", false, nil},
		{"hostile/bomb/fuzzdb-lottapixel.jpg", false, nil}, // too large, not a fallback
		{"formats/other/sharp-testimgl-lossless-sof3.jpg", true, nil},
		// A progressive JPEG whose last six scans were cut off and replaced by
		// an EOI marker: image/jpeg shows the partial image, which the
		// manifest accepts too; this package leaves it to image/jpeg.
		{"hostile/truncated/go-video-001.progressive.truncated.jpeg", true, nil},
	} {
		t.Run(tc.file, func(t *testing.T) {
			is := is.New(t)
			_, err := Decode(readTestdata(t, tc.file), 8)
			t.Log(err)
			is.True(err != nil)
			is.Equal(errors.Is(err, ErrUnsupported), tc.unsupported)
			if tc.is != nil {
				is.True(errors.Is(err, tc.is))
			}
		})
	}
}

// TestTruncatedFiles: every prefix of a valid file is refused, with an error
// wrapping io.ErrUnexpectedEOF, or ErrUnsupported for a progressive file cut
// after a scan, and so is every prefix with an EOI marker appended.
func TestTruncatedFiles(t *testing.T) {
	restarts := generatedJPEG(encSpec{sampling: s3(0x22, 0x11, 0x11), ri: 2}, 40, 40)
	for _, tc := range []struct {
		name string
		src  []byte
	}{
		{"photos/go-video-001.jpeg", nil},
		{"formats/jpeg/go-video-001.progressive.jpeg", nil},
		{"formats/jpeg/go-video-001.cmyk.jpeg", nil},
		{"photos/concert-gray.jpg", nil},
		{"restart markers", restarts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src
			if src == nil {
				src = readTestdata(t, tc.name)
			}
			// Every byte of the headers, then 150 cuts in the data (fewer
			// under the race detector).
			header := bytes.Index(src, []byte{0xff, 0xda}) + 20
			headerStep, cuts := 1, 150
			if raceEnabled {
				headerStep, cuts = 5, 40
			}
			for n := 0; n < len(src)-2; n += max(headerStep, min(n/header, 1)*len(src)/cuts) {
				for _, tail := range [][]byte{nil, {0xff, 0xd9}} {
					cut := append(src[:n:n], tail...)
					for _, denom := range []int{1, 8} {
						m, err := Decode(cut, denom)
						if m != nil || err == nil {
							t.Fatalf("%d bytes + %x at 1/%d: decoded", n, tail, denom)
						}
						if tail == nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrUnsupported) {
							t.Fatalf("%d bytes at 1/%d: %v", n, denom, err)
						}
					}
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	valid := encode(encSpec{w: 16, h: 16, sampling: []uint8{0x22, 0x11, 0x11}}, testPlanes(16, 16, 3, 1))
	withSOF := func(marker byte, precision byte) []byte {
		b := bytes.Clone(valid)
		i := bytes.Index(b, []byte{0xff, 0xc0})
		b[i+1] = marker
		b[i+4] = precision
		return b
	}
	for _, tc := range []struct {
		name        string
		src         []byte
		denom       int
		unsupported bool
	}{
		{"denom 3", valid, 3, true},
		{"denom 16", valid, 16, true},
		{"denom 0", valid, 0, true},
		{"12-bit", withSOF(0xc1, 12), 1, true},
		{"lossless", withSOF(0xc3, 8), 2, true},
		{"arithmetic", withSOF(0xc9, 8), 4, true},
		{"progressive arithmetic", withSOF(0xca, 8), 8, true},
		{"hierarchical", withSOF(0xc5, 8), 8, true},
		{"empty", nil, 1, false},
		{"not a JPEG", []byte("GIF89a...."), 1, false},
		{"SOI only", []byte{0xff, 0xd8}, 1, false},
		{"no SOS", []byte{0xff, 0xd8, 0xff, 0xd9}, 1, false},
		{"2 components", []byte{0xff, 0xd8, 0xff, 0xc0, 0, 14, 8, 0, 1, 0, 1, 2, 1, 0x11, 0, 2, 0x11, 0}, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			m, err := Decode(tc.src, tc.denom)
			t.Log(err)
			is.True(err != nil)
			is.True(m == nil)
			is.Equal(errors.Is(err, ErrUnsupported), tc.unsupported)
		})
	}
	t.Run("valid", func(t *testing.T) {
		m, err := Decode(valid, 2)
		is.New(t).NoErr(err)
		is.New(t).Equal(m.Bounds(), image.Rect(0, 0, 8, 8))
	})
}

// TestSizeLimit: the size check comes from the header, before any
// allocation; the corpus bomb declares 64250x64250.
func TestSizeLimit(t *testing.T) {
	for _, tc := range []struct {
		w, h int
		ok   bool
	}{
		{16384, 8192, true},  // 2^27 pixels: at the limit
		{16384, 8193, false}, // over it
		{65535, 65535, false},
	} {
		t.Run(fmt.Sprintf("%dx%d", tc.w, tc.h), func(t *testing.T) {
			is := is.New(t)
			// A gray header with the given size and no data.
			src := []byte{0xff, 0xd8, 0xff, 0xc0, 0, 11, 8, byte(tc.h >> 8), byte(tc.h), byte(tc.w >> 8), byte(tc.w), 1, 1, 0x11, 0,
				0xff, 0xda, 0, 8, 1, 1, 0, 0, 63, 0}
			allocs := testing.AllocsPerRun(1, func() { _, err := Decode(src, 8); is.True(err != nil) })
			_, err := Decode(src, 8)
			t.Log(err, allocs)
			is.True(!errors.Is(err, ErrUnsupported)) // never a fallback to image/jpeg
			if tc.ok {
				// Accepted by the size check, then refused for lack of data
				// before allocating the image.
				is.True(errors.Is(err, io.ErrUnexpectedEOF))
			} else {
				is.True(!errors.Is(err, io.ErrUnexpectedEOF))
			}
			is.True(allocs < 10) // no image was allocated
		})
	}
}

// skipLarge is true, under the race detector, for the corpus's photos over
// 1 MP, which take it long to decode (smaller files run the same code).
func skipLarge(file string) bool {
	if !raceEnabled {
		return false
	}
	b, err := os.ReadFile(testdata + file)
	if err != nil {
		return false
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(b))
	return err == nil && cfg.Width*cfg.Height > 1<<20
}

// TestConcurrentDecode: Decode keeps no shared state (run with -race).
func TestConcurrentDecode(t *testing.T) {
	srcs := [][]byte{
		readTestdata(t, "photos/go-video-001.jpeg"),
		readTestdata(t, "formats/jpeg/go-video-001.progressive.jpeg"),
		readTestdata(t, "formats/jpeg/go-video-001.cmyk.jpeg"),
	}
	want := make([]image.Image, len(srcs))
	for i, src := range srcs {
		var err error
		want[i], err = Decode(src, 2)
		is.New(t).NoErr(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8*len(srcs))
	for range 8 {
		for i, src := range srcs {
			wg.Go(func() {
				m, err := Decode(src, 2)
				if err != nil {
					errs <- err.Error()
				} else if diff := samePixels(m, want[i], 0); diff != "" {
					errs <- diff
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// BenchmarkDecode compares image/jpeg's full-size decoding with Decode at
// every scale, on the corpus's 12 MP baseline and 13 MP progressive photos and
// a 2.5 MP baseline one.
//
//	go test -run '^$' -bench Decode -benchmem ./thumbnail/internal/jpegscale/
func BenchmarkDecode(b *testing.B) {
	for _, file := range []string{
		"photos/IMG_9424.JPG",            // 4032x3024 baseline 4:2:0, restart markers
		"photos/Dragonfly_by_Bolly.jpg",  // 4224x3168 progressive 4:2:2
		"photos/Wine_by_Jakkub_Mede.jpg", // 2560x3837 progressive 4:2:2
		"photos/Storm.jpg",               // 1920x1280 baseline 4:2:2
	} {
		src := readTestdata(b, file)
		b.Run(file[len("photos/"):]+"/image-jpeg", func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := jpeg.Decode(bytes.NewReader(src)); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, denom := range denoms {
			b.Run(fmt.Sprintf("%s/1_%d", file[len("photos/"):], denom), func(b *testing.B) {
				b.SetBytes(int64(len(src)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Decode(src, denom); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
