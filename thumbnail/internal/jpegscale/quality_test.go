package jpegscale

import (
	"math"
	"strings"
	"testing"

	"github.com/matryer/is"
	"github.com/nfnt/resize"
)

// TestPhotosScaledPSNR: each corpus photo decoded at 1/2, 1/4 and 1/8 is
// within 35 dB PSNR of image/jpeg's full-size decoding shrunk by the same
// factor with a box filter. The box filter shrinks image/jpeg's result in its
// own terms, an *image.YCbCr keeping its chroma subsampling (the planes are
// shrunk), as the scaled decoding does; the PSNR is measured on the RGB
// pixels. Also logged and checked, less strictly: the PSNR against the
// full-size RGB pixels shrunk, which counts the chroma resolution that a
// subsampled image loses at 1/denom (a 4:2:0 image shrunk to 1/4 keeps its
// chroma at 1/8).
func TestPhotosScaledPSNR(t *testing.T) {
	figures, rgbFigures := map[int][]float64{}, map[int][]float64{}
	for _, file := range photoFiles(t) {
		if skipLarge(file) {
			continue
		}
		t.Run(file, func(t *testing.T) {
			is := is.New(t)
			full, err := stdlibDecode(t, file)
			is.NoErr(err)
			fullRGB := toRGB(full)
			for _, denom := range []int{2, 4, 8} {
				got, err := Decode(readTestdata(t, file), denom)
				is.NoErr(err)
				checkShape(t, got, full, denom)
				gotRGB := toRGB(got)
				p := psnr(toRGB(shrinkImage(full, denom)), gotRGB)
				pRGB := psnr(boxShrink(fullRGB, denom), gotRGB)
				t.Logf("1/%d: %.2f dB (against the RGB pixels shrunk: %.2f dB)", denom, p, pRGB)
				figures[denom] = append(figures[denom], p)
				rgbFigures[denom] = append(rgbFigures[denom], pRGB)
				is.True(p >= 35)    // close to image/jpeg + box filter
				is.True(pRGB >= 30) // and the loss of chroma resolution is small
			}
		})
	}
	for _, denom := range []int{2, 4, 8} {
		if len(figures[denom]) > 0 {
			lo, median := stats(figures[denom])
			loRGB, medianRGB := stats(rgbFigures[denom])
			t.Logf("1/%d: min %.2f dB, median %.2f dB over %d photos (against the RGB pixels shrunk: min %.2f dB, median %.2f dB)",
				denom, lo, median, len(figures[denom]), loRGB, medianRGB)
		}
	}
}

// TestThumbnailPSNR is the acceptance figure of the issue: a 256 px wide
// thumbnail made from the scaled decoding, at the scale Denom picks for twice
// the thumbnail's size, differs from one made from image/jpeg's full-size
// decoding by no more than 38 dB PSNR, both resized with nfnt/resize's
// Lanczos3.
func TestThumbnailPSNR(t *testing.T) {
	width := 256
	if raceEnabled {
		// The race detector skips the photos over 1 MP: make thumbnails
		// small enough for the others to be scaled.
		width = 96
	}
	var figures []float64
	rows := jpegRows(t)
	for _, row := range rows {
		// The photos, and two of the exif-orientation ones (the others are
		// the same photo turned).
		if row.Category != "photo" && !strings.HasSuffix(row.File, "Landscape_1.jpg") && !strings.HasSuffix(row.File, "Landscape_6.jpg") ||
			skipLarge(row.File) {
			continue
		}
		t.Run(row.File, func(t *testing.T) {
			is := is.New(t)
			full, err := stdlibDecode(t, row.File)
			is.NoErr(err)
			w, h := full.Bounds().Dx(), full.Bounds().Dy()
			denom := Denom(w, h, 2*width, 2*width*h/w)
			scaled, err := Decode(readTestdata(t, row.File), denom)
			is.NoErr(err)
			// Both to the same size, from the full size's aspect ratio (the
			// scaled image's may differ slightly: its last row and column
			// can cover fewer than denom pixels), as the thumbnail pipeline
			// does.
			height := uint(max(1, (width*h+w/2)/w))
			a := resize.Resize(uint(width), height, full, resize.Lanczos3)
			b := resize.Resize(uint(width), height, scaled, resize.Lanczos3)
			is.Equal(a.Bounds(), b.Bounds())
			p := psnr(toRGB(a), toRGB(b))
			t.Logf("%dx%d at 1/%d (%dx%d) -> %v: %.2f dB", w, h, denom, scaled.Bounds().Dx(), scaled.Bounds().Dy(), a.Bounds().Size(), p)
			if denom == 1 {
				is.True(math.IsInf(p, 1)) // the same pixels
				return
			}
			figures = append(figures, p)
			is.True(p >= 38)
		})
	}
	if len(figures) == 0 {
		t.Fatal("no photo was scaled")
	}
	lo, median := stats(figures)
	t.Logf("scaled: min %.2f dB, median %.2f dB over %d photos", lo, median, len(figures))
}
